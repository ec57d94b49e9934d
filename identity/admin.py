"""Admin HTTP server of a control-plane process: /live, /ready, /metrics (aiohttp).

Shared by identity and destination; `ready` is a callable so each service
decides what readiness means (e.g. destination: initial list loaded).
"""
from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def admin_app(*, ready: Callable[[], bool], registry: CollectorRegistry) -> web.Application:
    async def live(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready_handler(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/live", live)
    app.router.add_get("/ping", live)
    app.router.add_get("/ready", ready_handler)
    app.router.add_get("/metrics", metrics)
    return app


async def start_admin(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner


def split_hostport(value: str, *, what: str) -> tuple[str, int]:
    """'host:port' -> (host, port); ValueError naming `what` when malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what}: expected host:port, got {value!r}")
    return host.strip("[]"), int(port)
