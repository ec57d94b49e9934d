"""The inbound router: every request arriving at the pod goes to its app on the original port."""
from __future__ import annotations

from .client import Pools
from .config import ProxyConfig
from .errors import LoopDetected
from .exchange import ConnCtx, Route
from .http1 import RequestHead
from .metrics import ProxyMetrics, RouteMetrics
from .resolve import normalize_authority


class InboundRouter:
    """Everything inbound goes to the app on the original destination port."""

    def __init__(self, cfg: ProxyConfig, pools: Pools, metrics: ProxyMetrics) -> None:
        self.cfg = cfg
        self.pools = pools
        self.metrics = metrics
        self._self_ports = set(cfg.ports.all())
        self._routes: dict[tuple[bytes, int, bool, str], Route] = {}
        """(Host, original port, TLS, client id) → route: no label or pool work per request."""

    def _labels(self, head: RequestHead | None, ctx: ConnCtx) -> tuple[str, ...]:
        authority = normalize_authority(head.host, ctx.orig_port) if head is not None and head.host else ""
        return self.metrics.base("inbound", authority=authority, tls=ctx.tls, client_id=ctx.client_id)

    def route_now(self, head: RequestHead, ctx: ConnCtx) -> Route:
        key = (head.host, ctx.orig_port, ctx.tls, ctx.client_id)
        route = self._routes.get(key)
        if route is None:
            if ctx.orig_port in self._self_ports:
                raise LoopDetected(f"inbound connection to proxy port {ctx.orig_port}")
            labels = self._labels(head, ctx)
            pool = self.pools.get(self.cfg.inbound_app_ip, ctx.orig_port, "", "",
                                  self.metrics.base("inbound") + ("dst",))
            if len(self._routes) > 10000:
                self._routes.clear()
            route = self._routes[key] = Route(pool, self.metrics.route(labels), None)
        return route

    async def route(self, head: RequestHead, ctx: ConnCtx) -> Route:
        return self.route_now(head, ctx)

    def error_metrics(self, head: RequestHead | None, ctx: ConnCtx) -> RouteMetrics:
        return self.metrics.route(self._labels(head, ctx))
