"""Fixtures for the e2e package's own tests: serve aiohttp apps on loopback ports."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from e2e_support import StartApp


@pytest.fixture
async def start_app() -> AsyncIterator[StartApp]:
    """`await start_app(app)` serves `app` on 127.0.0.1:<free port> and returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()
