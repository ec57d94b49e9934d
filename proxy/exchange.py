"""What flows between the HTTP server, the routers and the pools: connection context,
routes and the state of one request/response exchange."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from .balance import PeakEwma
from .client import Pool, Upstream
from .http1 import RequestHead
from .metrics import RouteMetrics


@dataclass(slots=True)
class ConnCtx:
    direction: str
    orig_ip: str
    orig_port: int
    tls: bool = False
    client_id: str = ""


@dataclass(slots=True)
class Route:
    pool: Pool
    metrics: RouteMetrics
    load: PeakEwma | None = None


class Router(Protocol):
    def route_now(self, head: RequestHead, ctx: ConnCtx) -> Route | None:
        """The route when it is known without waiting (None: call `route`); raises ProxyError."""

    async def route(self, head: RequestHead, ctx: ConnCtx) -> Route: ...

    def error_metrics(self, head: RequestHead | None, ctx: ConnCtx) -> RouteMetrics: ...


class Exchange:
    __slots__ = ("head", "body", "buffered", "body_done", "upstream", "route", "start", "resp_started",
                 "replay", "retried", "upgrade_buf", "status")

    def __init__(self, head: RequestHead) -> None:
        self.head = head
        self.body: list[bytes] | None = []
        self.buffered = 0
        self.body_done = False
        self.upstream: Upstream | None = None
        self.route: Route | None = None
        self.start = time.monotonic()
        self.resp_started = False
        self.replay: bytes | None = None
        self.retried = False
        self.upgrade_buf = b""
        self.status = 0
