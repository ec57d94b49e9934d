"""Test workloads run inside a test network namespace.

`python apps.py NAME`: HTTP on 8080 (JSON echo of the request, POST /echo
echoes the body, /ws is a WebSocket echo, /status/N answers N, /flaky/KEY fails
(503) every other request per key, /fail-on/NAME answers 500 in the app NAME and
200 elsewhere, /_seen lists the (host, path) of the requests seen), the same over
HTTPS on 8443 when APPS_TLS_CERT/APPS_TLS_KEY name a certificate, and a
server-speaks-first line protocol on 2525 (banner, then echoes lines).
"""
import asyncio
import collections
import os
import sys

from aiohttp import WSMsgType, web


def make_app(name: str) -> web.Application:
    seen: collections.deque = collections.deque(maxlen=5000)
    flaky: dict[str, int] = {}

    @web.middleware
    async def record(request: web.Request, handler):  # noqa: ANN001, ANN202
        if request.path != "/_seen":
            seen.append((request.host, request.path_qs))
        return await handler(request)

    async def seen_list(request: web.Request) -> web.Response:
        return web.json_response(list(seen))

    async def flaky_handler(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        n = flaky[key] = flaky.get(key, 0) + 1
        return web.Response(status=503 if n % 2 else 200, text=f"flaky {n} from {name}\n")

    async def fail_on(request: web.Request) -> web.Response:
        return web.Response(status=500 if request.match_info["who"] == name else 200, text=f"from {name}\n")

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"app": name, "method": request.method, "path": request.path_qs,
                                  "headers": dict(request.headers)})

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text=f"status from {name}\n")

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(int(request.match_info["n"])):
            await resp.write(f"chunk {i}\n".encode())
        await resp.write_eof()
        return resp

    async def sleep(request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.match_info["ms"]) / 1000)
        return web.Response(text=f"slept from {name}\n")

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == WSMsgType.TEXT:
                await sock.send_str(f"{name}:{msg.data}")
        return sock

    app = web.Application(middlewares=[record])
    app.router.add_get("/_seen", seen_list)
    app.router.add_get("/flaky/{key}", flaky_handler)
    app.router.add_get("/fail-on/{who}", fail_on)
    app.router.add_get("/ws", ws)
    app.router.add_post("/echo", echo)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/stream/{n}", stream)
    app.router.add_get("/sleep/{ms}", sleep)
    app.router.add_route("*", "/{tail:.*}", info)
    return app


async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 banner from " + sys.argv[1].encode() + b"\r\n")
    await writer.drain()
    while line := await reader.readline():
        writer.write(b"echo " + line)
        await writer.drain()
    writer.close()


async def main(name: str) -> None:
    runner = web.AppRunner(make_app(name), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", 8080).start()
    if os.environ.get("APPS_TLS_CERT"):  # HTTPS on 8443 (a server outside the mesh)
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(os.environ["APPS_TLS_CERT"], os.environ["APPS_TLS_KEY"])
        await web.TCPSite(runner, "0.0.0.0", 8443, ssl_context=ctx).start()
    server = await asyncio.start_server(banner, "0.0.0.0", 2525)
    print("apps ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
