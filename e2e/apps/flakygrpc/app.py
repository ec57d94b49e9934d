"""The flaky gRPC server and the caller (see the package docstring)."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from grpclib import GRPCError
from grpclib.const import Status
from grpclib.exceptions import StreamTerminatedError
from meshlet.e2e.apps.emojivoto.common import ConfigError, parse_hostport, parse_port
from meshlet.e2e.apps.emojivoto.emoji import EmojiService
from meshlet.e2e.apps.emojivoto.pb import emojivoto_pb as pb

MAX_CALLS = 1000
CALL_TIMEOUT_S = 10.0


class FlakyEmoji(EmojiService):
    """EmojiService whose odd-numbered `ListAll` calls fail with UNAVAILABLE."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def list_all(self, message: pb.ListAllEmojiRequest) -> pb.ListAllEmojiResponse:
        self.calls += 1
        if self.calls % 2 == 1:
            raise GRPCError(Status.UNAVAILABLE, f"flaky: call {self.calls} fails (every other one does)")
        return await super().list_all(message)


@dataclass(frozen=True)
class Settings:
    port: int = 8080
    flaky: tuple[str, int] = ("flaky-svc", 8080)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(port=parse_port("PORT", env.get("PORT") or "8080"),
                   flaky=parse_hostport("FLAKY_ADDR", env.get("FLAKY_ADDR") or "flaky-svc:8080"))


async def call_batch(stub: pb.EmojiServiceStub, n: int) -> dict[str, object]:
    """`n` sequential ListAll calls: how many succeeded, failures by gRPC status (or error type)."""
    ok, errors = 0, Counter[str]()
    for _ in range(n):
        try:
            await stub.list_all(pb.ListAllEmojiRequest(), timeout=CALL_TIMEOUT_S)
            ok += 1
        except GRPCError as e:
            errors[e.status.name] += 1
        except (TimeoutError, StreamTerminatedError, OSError) as e:
            errors[type(e).__name__] += 1
    return {"ok": ok, "errors": dict(errors)}


def caller_app(settings: Settings) -> web.Application:
    from grpclib.client import Channel

    app = web.Application()
    channel_key: web.AppKey[Channel] = web.AppKey("channel", Channel)

    async def channel(app: web.Application):  # type: ignore[no-untyped-def]
        app[channel_key] = Channel(*settings.flaky)
        yield
        app[channel_key].close()

    async def call(request: web.Request) -> web.Response:
        text = request.query.get("n", "1")
        if not text.isdigit() or not 1 <= int(text) <= MAX_CALLS:
            return web.json_response({"error": f"n must be 1..{MAX_CALLS}, got {text!r}"}, status=400)
        return web.json_response(await call_batch(pb.EmojiServiceStub(app[channel_key]), int(text)))

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="pong")

    app.cleanup_ctx.append(channel)
    app.router.add_get("/call", call)
    app.router.add_get("/ping", ping)
    return app


async def _serve_grpc(port: int) -> None:
    from grpclib.server import Server

    server = Server([FlakyEmoji()])
    await server.start("0.0.0.0", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["server"], ["client"]):
        print("usage: python -m meshlet.e2e.apps.flakygrpc server|client", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as e:
        print(f"flakygrpc: {e}", file=sys.stderr)
        return 2
    if args == ["server"]:
        asyncio.run(_serve_grpc(settings.port))
    else:
        web.run_app(caller_app(settings), host="0.0.0.0", port=settings.port, access_log=None, print=None)
    return 0
