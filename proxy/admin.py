"""Admin (15000), metrics (15090) and health (15021) endpoints on a tiny HTTP/1 server.

A few GET/POST routes need no framework: an asyncio Protocol with httptools
keeps the idle proxy small (aiohttp alone would cost ~20 MB of RSS).
"""
from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import httptools

Handler = Callable[[], Awaitable[tuple[int, str, bytes]]]
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def text(status: int, body: str) -> tuple[int, str, bytes]:
    return status, "text/plain; charset=utf-8", body.encode()


def as_json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value, indent=2, sort_keys=True).encode()


class _AdminProtocol(asyncio.Protocol):
    def __init__(self, routes: dict[tuple[str, str], Handler], tasks: set[asyncio.Task[None]]) -> None:
        self.routes = routes
        self.tasks = tasks
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.queue: list[tuple[str, str, bool]] = []
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._respond(*text(400, "malformed request\n"), keep_alive=False)

    def on_message_begin(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        path = httptools.parse_url(self.url).path.decode("latin-1") if self.url else "/"
        self.queue.append((self.parser.get_method().decode(), path, self.parser.should_keep_alive()))
        if not self.busy:
            self._next()

    def _next(self) -> None:
        if not self.queue or self.transport is None or self.transport.is_closing():
            return
        method, path, keep = self.queue.pop(0)
        handler = self.routes.get((method, path))
        if handler is None:
            allowed = [m for (m, p) in self.routes if p == path]
            self._respond(*(text(405, f"use {', '.join(allowed)}\n") if allowed else text(404, "not found\n")),
                          keep_alive=keep)
            self._next()
            return
        self.busy = True
        task = asyncio.get_running_loop().create_task(self._run(handler, keep))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, handler: Handler, keep: bool) -> None:
        try:
            status, ctype, body = await handler()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - an admin handler bug must not kill the proxy
            status, ctype, body = text(500, f"internal error: {e}\n")
        self.busy = False
        self._respond(status, ctype, body, keep_alive=keep)
        self._next()

    def _respond(self, status: int, ctype: str, body: bytes, *, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\ncontent-type: {ctype}\r\n"
                f"content-length: {len(body)}\r\n{'' if keep_alive else 'connection: close' + chr(13) + chr(10)}\r\n")
        self.transport.write(head.encode() + body)
        if not keep_alive:
            self.transport.close()


async def serve(host: str, port: int, routes: dict[tuple[str, str], Handler]) -> asyncio.AbstractServer:
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _AdminProtocol(routes, tasks), host, port, reuse_address=True)


async def serve_socket(sock: socket.socket, routes: dict[tuple[str, str], Handler]) -> asyncio.AbstractServer:
    """The same routes on an already listening socket (a proxy worker's Unix control socket)."""
    tasks: set[asyncio.Task[None]] = set()
    return await asyncio.get_running_loop().create_unix_server(lambda: _AdminProtocol(routes, tasks), sock=sock)
