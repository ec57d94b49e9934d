"""A stand-in sidecar for tests until/unless the real proxy is used: L4 transparent splice.

Admin `/ready` on 15000; outbound 15001 and inbound 15006 forward every
connection to its SO_ORIGINAL_DST (the proxy runs with gid 1337, so its own
connections are not redirected again). Adds nothing to the bytes, so a test
can see interception only through the connection counter at `/stats`.
"""
from __future__ import annotations

import asyncio
import socket
import struct

SO_ORIGINAL_DST = 80
counts = {"outbound": 0, "inbound": 0}


def original_dst(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, ip = struct.unpack("!2xH4s8x", raw)
    return socket.inet_ntoa(ip), port


async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            w.write_eof()
        except (OSError, RuntimeError):
            pass


def splice(direction: str):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts[direction] += 1
        host, port = original_dst(writer.get_extra_info("socket"))
        try:
            ur, uw = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))
        uw.close()
        writer.close()
    return handle


async def admin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    path = line.split()[1].decode() if len(line.split()) > 1 else "/"
    body = (f"{counts['outbound']} {counts['inbound']}\n" if path == "/stats" else "ok\n").encode()
    writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    writer.close()


async def main() -> None:
    servers = [await asyncio.start_server(admin, "0.0.0.0", 15000),
               await asyncio.start_server(splice("outbound"), "0.0.0.0", 15001),
               await asyncio.start_server(splice("inbound"), "0.0.0.0", 15006)]
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
