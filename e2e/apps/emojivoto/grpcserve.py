"""Serving one grpclib service until SIGTERM/SIGINT (emoji and voting share this)."""
from __future__ import annotations

import asyncio
import signal
from typing import Any


async def run_server(service: Any, host: str, port: int, stop: asyncio.Event, log: Any) -> None:
    from grpclib.server import Server

    server = Server([service])
    await server.start(host, port)
    log.info("serve.started", host=host, port=port)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def serve(component: str, service: Any) -> None:
    """Entry point of `python -m meshlet.e2e.apps.emojivoto.<component>`."""
    from meshlet.controller import log
    from meshlet.e2e.apps.emojivoto.common import ConfigError, GrpcSettings

    logger = log.setup(f"emojivoto-{component}")
    try:
        settings = GrpcSettings.from_env()
    except ConfigError as exc:
        logger.error("config.invalid", error=str(exc))
        raise SystemExit(2) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_server(service, settings.host, settings.port, stop, logger)

    asyncio.run(main())
