"""What flows between the HTTP server, the routers and the pools: connection context,
routes and the state of one request/response exchange."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .balance import PeakEwma
from .client import Pool, Upstream
from .http1 import RequestHead
from .metrics import RouteMetrics

if TYPE_CHECKING:
    from .cluster import Cluster
    from .profile import HeaderOps, Mirror, Retry
    from .profile import Route as RouteSpec


@dataclass(slots=True)
class ConnCtx:
    direction: str
    orig_ip: str
    orig_port: int
    tls: bool = False
    client_id: str = ""


class Plan:
    """What the route configuration decided for one request (outbound, with a profile)."""

    __slots__ = ("spec", "head", "resp_ops", "delay", "timeout", "retry", "cluster", "target", "subset",
                 "authority", "hash_key", "addr", "retries", "mirror", "retry_counter")

    def __init__(self, spec: RouteSpec | None, head: RequestHead, cluster: Cluster, target: Any,
                 subset: tuple[tuple[str, str], ...], authority: str, retry: Retry) -> None:
        self.spec = spec
        self.head = head
        """The head as it goes upstream (rewritten, header operations applied)."""
        self.resp_ops: tuple[HeaderOps, ...] = ()
        self.delay = 0.0
        self.timeout = spec.timeout if spec is not None else 0.0
        self.retry = retry
        self.cluster = cluster
        self.target = target
        """The backend's `resolve.Target` (endpoints for retries)."""
        self.subset = subset
        self.authority = authority
        self.hash_key: bytes | None = None
        self.addr: tuple[str, int] = ("", 0)
        self.retries = 0
        self.mirror: Mirror | None = None
        self.retry_counter: Callable[[str], None] | None = None
        """Counts `retry_total` ("retry") and `retry_skipped_total` (a reason)."""


class PlanSeed:
    """A route that needs no per-request policy (HTTP/1 fast path): no fault, mirror, timeouts,
    header operations, pool limits, outlier detection, nor retries of anything but a failed
    connect. Requests on it carry no `Plan`; a failed connect becomes one (`plan`) to be retried
    like any other, since nothing was sent yet. The retry budget still counts every request."""

    __slots__ = ("spec", "cluster", "target", "subset", "authority")

    def __init__(self, spec: RouteSpec, cluster: Cluster, target: Any, subset: tuple[tuple[str, str], ...],
                 authority: str) -> None:
        self.spec = spec
        self.cluster = cluster
        self.target = target
        self.subset = subset
        self.authority = authority

    def plan(self, head: RequestHead, addr: tuple[str, int]) -> Plan:
        """The plan the request would have had (its first try went to `addr`)."""
        plan = Plan(self.spec, head, self.cluster, self.target, self.subset, self.authority, self.spec.retry)
        plan.addr = addr
        return plan


@dataclass(slots=True)
class Route:
    pool: Pool
    metrics: RouteMetrics
    load: PeakEwma | None = None
    plan: Plan | None = None
    seed: PlanSeed | None = None
    """Fast path: no plan, but connect failures may still be retried (see `PlanSeed`)."""


@dataclass(slots=True)
class Reply:
    """A response the proxy gives itself (404, redirect, direct response, fault abort, CORS)."""
    status: int
    make: Callable[[bool], bytes]
    """Builds the response bytes; the argument says whether the connection closes after it."""
    metrics: RouteMetrics


class Router(Protocol):
    def route_now(self, head: RequestHead, ctx: ConnCtx) -> Route | Reply | None:
        """The route when it is known without waiting (None: call `route`); raises ProxyError."""

    async def route(self, head: RequestHead, ctx: ConnCtx) -> Route | Reply: ...

    def error_metrics(self, head: RequestHead | None, ctx: ConnCtx) -> RouteMetrics: ...


class Exchange:
    __slots__ = ("head", "body", "buffered", "body_done", "upstream", "route", "start", "resp_started",
                 "replay", "retried", "upgrade_buf", "status", "timer", "try_timer", "permit", "armed",
                 "restart_load")

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
        self.timer: asyncio.TimerHandle | None = None
        self.try_timer: asyncio.TimerHandle | None = None
        self.permit: Any = None
        """The cluster `Limiter` whose slot this request holds."""
        self.armed = False
        """Route policy started (delay done, timeout armed, permit taken)."""
        self.restart_load = False
