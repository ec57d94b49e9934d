"""Routers: where an HTTP request or an opaque stream goes, outbound and inbound."""
from __future__ import annotations

import time
from dataclasses import dataclass

from .balance import P2C
from .client import Pool, Pools
from .config import ProxyConfig
from .endpoints import Endpoint, Kind
from .errors import LoopDetected, NoEndpoints
from .http1 import RequestHead
from .metrics import ProxyMetrics, RouteMetrics
from .resolve import Resolver, Target, normalize_authority, usable
from .exchange import ConnCtx, Route


@dataclass(frozen=True, slots=True)
class TcpRoute:
    ip: str
    port: int
    identity: str
    server_name: str
    labels: tuple[str, ...]


def _label(labels: tuple[tuple[str, str], ...], *keys: str) -> str:
    d = dict(labels)
    for k in keys:
        if d.get(k):
            return d[k]
    return ""


class OutboundRouter:
    def __init__(self, cfg: ProxyConfig, resolver: Resolver, pools: Pools, metrics: ProxyMetrics,
                 p2c: P2C | None = None) -> None:
        self.cfg = cfg
        self.resolver = resolver
        self.pools = pools
        self.metrics = metrics
        self.p2c = p2c or P2C()
        self._self_ports = (cfg.ports.outbound, cfg.ports.inbound)
        self._cache: dict[tuple[str, int, str, int], tuple[Pool, RouteMetrics]] = {}
        self._authorities: dict[tuple[bytes, int], str] = {}
        """(authority, endpoint-set version, endpoint) → pool and metrics: no label work per request."""

    def authority(self, head: RequestHead | None, ctx: ConnCtx) -> str:
        if head is not None and head.host:
            key = (head.host, ctx.orig_port)
            a = self._authorities.get(key)
            if a is None:
                a = normalize_authority(head.host, ctx.orig_port)
                if len(self._authorities) > 10000:
                    self._authorities.clear()
                self._authorities[key] = a
            if a:
                return a
        return f"{ctx.orig_ip}:{ctx.orig_port}"

    def route_now(self, head: RequestHead, ctx: ConnCtx) -> Route | None:
        authority = self.authority(head, ctx)
        t = self.resolver.get(authority)
        if not t.answered.is_set():
            return None
        return self._pick(t, authority, ctx)

    async def route(self, head: RequestHead, ctx: ConnCtx) -> Route:
        authority = self.authority(head, ctx)
        t = self.resolver.get(authority)
        await t.wait(self.cfg.resolve_timeout)
        return self._pick(t, authority, ctx)

    def error_metrics(self, head: RequestHead | None, ctx: ConnCtx) -> RouteMetrics:
        return self.metrics.route(self.metrics.base("outbound", authority=self.authority(head, ctx)))

    def _pick(self, t: Target, authority: str, ctx: ConnCtx) -> Route:
        kind = usable(t)
        m = self.metrics
        if kind is Kind.ENDPOINTS:
            b = self.p2c.choose(t.state.balanced(), time.monotonic())
            ep = b.endpoint
            key = (authority, t.state.version, ep.ip, ep.port)
            cached = self._cache.get(key)
            if cached is None:
                svc = _label(t.state.labels, "dst_service", "service")
                ns = _label(t.state.labels, "dst_namespace", "namespace")
                ip, port, identity, server_name = self._dial(ep)
                labels = m.base("outbound", authority=authority, tls=bool(identity), server_id=identity,
                                dst_service=svc, dst_namespace=ns)
                if len(self._cache) > 10000:
                    self._cache.clear()
                cached = self._cache[key] = (self._pool(ip, port, identity, server_name, svc, ns), m.route(labels))
            return Route(cached[0], cached[1], b.load)
        if kind is Kind.EMPTY:
            raise NoEndpoints(f"service {authority} has no ready endpoints")
        self._check_loop(ctx)
        pool = self._pool(ctx.orig_ip, ctx.orig_port, "", "", "", "")
        return Route(pool, m.route(m.base("outbound", authority=authority)), None)

    def _dial(self, ep: Endpoint) -> tuple[str, int, str, str]:
        """Where to connect for an endpoint. Our own pod is reached directly on the app's port:
        the proxy's own connections to the pod address would never pass its inbound side."""
        if self.cfg.pod_ip and ep.ip == self.cfg.pod_ip:
            return self.cfg.inbound_app_ip, ep.port, "", ""
        return ep.ip, ep.port, ep.identity, ep.server_name

    def _pool(self, ip: str, port: int, identity: str, server_name: str, svc: str, ns: str) -> Pool:
        tcp = self.metrics.base("outbound", tls=bool(identity), server_id=identity, dst_service=svc,
                                dst_namespace=ns) + ("dst",)
        return self.pools.get(ip, port, identity, server_name, tcp)

    def _check_loop(self, ctx: ConnCtx) -> None:
        if ctx.orig_port in self._self_ports and ctx.orig_ip in (self.cfg.pod_ip, "127.0.0.1", "0.0.0.0"):
            raise LoopDetected(f"connection to the proxy itself ({ctx.orig_ip}:{ctx.orig_port})")

    async def route_tcp(self, ctx: ConnCtx) -> TcpRoute:
        authority = f"{ctx.orig_ip}:{ctx.orig_port}"
        t = self.resolver.get(authority)
        await t.wait(self.cfg.resolve_timeout)
        kind = usable(t)
        if kind is Kind.ENDPOINTS:
            b = self.p2c.choose(t.state.balanced(), time.monotonic())
            ip, port, identity, server_name = self._dial(b.endpoint)
            labels = self.metrics.base(
                "outbound", authority=authority, tls=bool(identity), server_id=identity,
                dst_service=_label(t.state.labels, "dst_service", "service"),
                dst_namespace=_label(t.state.labels, "dst_namespace", "namespace"))
            return TcpRoute(ip, port, identity, server_name, labels)
        if kind is Kind.EMPTY:
            raise NoEndpoints(f"service {authority} has no ready endpoints")
        self._check_loop(ctx)
        return TcpRoute(ctx.orig_ip, ctx.orig_port, "", "", self.metrics.base("outbound", authority=authority))


class InboundRouter:
    """Everything inbound goes to the app on the original destination port."""

    def __init__(self, cfg: ProxyConfig, pools: Pools, metrics: ProxyMetrics) -> None:
        self.cfg = cfg
        self.pools = pools
        self.metrics = metrics
        self._self_ports = set(cfg.ports.all())

    def _labels(self, head: RequestHead | None, ctx: ConnCtx) -> tuple[str, ...]:
        authority = normalize_authority(head.host, ctx.orig_port) if head is not None and head.host else ""
        return self.metrics.base("inbound", authority=authority, tls=ctx.tls, client_id=ctx.client_id)

    def route_now(self, head: RequestHead, ctx: ConnCtx) -> Route:
        if ctx.orig_port in self._self_ports:
            raise LoopDetected(f"inbound connection to proxy port {ctx.orig_port}")
        labels = self._labels(head, ctx)
        pool = self.pools.get(self.cfg.inbound_app_ip, ctx.orig_port, "", "",
                              self.metrics.base("inbound") + ("dst",))
        return Route(pool, self.metrics.route(labels), None)

    async def route(self, head: RequestHead, ctx: ConnCtx) -> Route:
        return self.route_now(head, ctx)

    def error_metrics(self, head: RequestHead | None, ctx: ConnCtx) -> RouteMetrics:
        return self.metrics.route(self._labels(head, ctx))
