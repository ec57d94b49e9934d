"""The serving skeleton every control-plane process shares (destination, identity, ...).

`run_grpc` starts the admin HTTP app (/live, /ready, /metrics plus whatever the
service adds), runs the service's background tasks (store watchers, secret
refreshers), optionally waits for a gate (e.g. "initial list loaded") before it
listens for gRPC, and then serves until SIGTERM/SIGINT. A background task that
ends on its own ends the process with its error: those tasks run forever by
contract, so an end means something is wrong. Shutdown closes the gRPC server,
cancels the tasks and stops the admin server, in that order; resources the
caller opened (stores, API clients) are closed by the caller afterwards.
"""
from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from grpclib.server import Server
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class BackgroundTaskEnded(RuntimeError):
    """A task that should run until cancelled returned."""


@dataclass
class ServeState:
    """Mutable view of the serving state, read by readiness callables."""

    serving: bool = False


@dataclass(frozen=True)
class GrpcServeSpec:
    name: str
    """Component name: log events are `<name>.started` / `<name>.stopping`."""
    handlers: Sequence[Any]
    listen: tuple[str, int]
    admin_listen: tuple[str, int]
    ssl: ssl.SSLContext | None = None
    log_fields: Mapping[str, Any] = field(default_factory=dict)
    """Extra fields of the `<name>.started` event."""


async def run_grpc(
    spec: GrpcServeSpec,
    *,
    admin: web.Application,
    log: structlog.stdlib.BoundLogger,
    state: ServeState | None = None,
    background: Mapping[str, Coroutine[Any, Any, Any]] | None = None,
    gate: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve until a signal arrives (returns) or a background task ends (raises)."""
    state = state or ServeState()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(coro, name=name) for name, coro in (background or {}).items()]
    stopped = asyncio.create_task(stop.wait(), name=f"{spec.name}-stop")
    server = Server(list(spec.handlers))
    runner: web.AppRunner | None = None
    try:
        runner = await start_admin(admin, *spec.admin_listen)
        if gate is not None:
            gated = asyncio.ensure_future(gate())
            try:
                await asyncio.wait({gated, stopped, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gated.cancel()
            _raise_if_ended(tasks)
        if not stopped.done():
            await server.start(*spec.listen, ssl=spec.ssl)
            state.serving = True
            log.info(f"{spec.name}.started", listen=f"{spec.listen[0]}:{spec.listen[1]}",
                     admin=f"{spec.admin_listen[0]}:{spec.admin_listen[1]}", tls=spec.ssl is not None,
                     **dict(spec.log_fields))
            await asyncio.wait({stopped, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            _raise_if_ended(tasks)
        log.info(f"{spec.name}.stopping")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        stopped.cancel()
        if state.serving:
            state.serving = False
            server.close()
            await server.wait_closed()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()


def _raise_if_ended(tasks: Sequence[asyncio.Task[Any]]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled():
            task.result()  # raises the task's own error
            raise BackgroundTaskEnded(f"{task.get_name()} ended unexpectedly")


# === admin HTTP ===

def admin_app(*, ready: Callable[[], bool], registry: CollectorRegistry) -> web.Application:
    """/live and /ping (always 200), /ready (200 when `ready()`, else 503), /metrics (Prometheus)."""

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
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def split_hostport(value: str, *, what: str) -> tuple[str, int]:
    """'host:port' -> (host, port); ValueError naming `what` when malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what}: expected host:port, got {value!r}")
    return host.strip("[]"), int(port)
