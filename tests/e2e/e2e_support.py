"""Helpers shared by the e2e package's tests (imported by module name: pytest puts this folder on sys.path)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

StartApp = Callable[[web.Application], Awaitable[str]]


class Recorder:
    """A fake upstream answering canned JSON and keeping the headers it saw."""

    def __init__(self, body: Any, status: int = 200) -> None:
        self.body = body
        self.status = status
        self.requests: list[tuple[str, dict[str, str]]] = []

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.requests.append((request.path, {k.lower(): v for k, v in request.headers.items()}))
            return web.json_response(self.body, status=self.status)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app
