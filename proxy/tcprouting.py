"""Where an outbound opaque (non-HTTP) connection goes: the target's `tcp_routes` /
`tls_routes` (by the ClientHello's SNI), a weighted backend, an endpoint of it (a mixin of
`routing.OutboundRouter`)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .endpoints import Endpoint, Kind
from .errors import Blocked, NoEndpoints
from .exchange import ConnCtx
from .resolve import usable

BLOCKED = "blocked by outbound traffic policy"


@dataclass(frozen=True, slots=True)
class TcpRoute:
    ip: str
    port: int
    identity: str
    server_name: str
    labels: tuple[str, ...]


def label(labels: tuple[tuple[str, str], ...], *keys: str) -> str:
    """The first non-empty of `keys` in a target's metric labels."""
    d = dict(labels)
    for k in keys:
        if d.get(k):
            return d[k]
    return ""


class TcpRouting:
    # provided by OutboundRouter
    cfg: Any
    resolver: Any
    profiles: Any
    metrics: Any
    p2c: Any
    rng: Any

    def _dial(self, ep: Endpoint) -> tuple[str, int, str, str]: ...
    def _check_loop(self, ctx: ConnCtx) -> None: ...

    async def route_tcp(self, ctx: ConnCtx, sni: str | None = None) -> TcpRoute:
        """Where an opaque connection goes; `sni`: the app's ClientHello's server name (None: not TLS)."""
        authority = f"{ctx.orig_ip}:{ctx.orig_port}"
        subset: tuple[tuple[str, str], ...] = ()
        if self.profiles is not None:
            self.resolver.get(authority)  # both lookups at once: the target is the usual answer
            pt = self.profiles.get(authority)
            await pt.wait(self.cfg.resolve_timeout)
            l4 = pt.profile.l4
            r = l4.select(ctx.orig_ip, ctx.orig_port, sni) if l4 else None
            if r is not None:
                backend = r.pick(self.rng)
                authority, subset = backend.authority, backend.subset_labels
        t = self.resolver.get(authority)
        await t.wait(self.cfg.resolve_timeout)
        kind = usable(t)
        if kind in (Kind.PASSTHROUGH, Kind.UNKNOWN) and authority != f"{ctx.orig_ip}:{ctx.orig_port}":
            raise NoEndpoints(f"tcp/tls route backend {authority} is not a known service")
        if kind is Kind.ENDPOINTS:
            items = t.state.subset(subset) if subset else t.state.balanced()
            if not items:
                raise NoEndpoints(f"service {authority} has no ready endpoints in the subset {dict(subset)}")
            b = self.p2c.choose(items, time.monotonic())
            ip, port, identity, server_name = self._dial(b.endpoint)
            labels = self.metrics.base(
                "outbound", authority=authority, tls=bool(identity), server_id=identity,
                dst_service=label(t.state.labels, "dst_service", "service"),
                dst_namespace=label(t.state.labels, "dst_namespace", "namespace"))
            return TcpRoute(ip, port, identity, server_name, labels)
        if kind is Kind.EMPTY:
            raise NoEndpoints(f"service {authority} has no ready endpoints")
        if kind is Kind.BLOCKED:
            raise Blocked(BLOCKED)
        self._check_loop(ctx)
        return TcpRoute(ctx.orig_ip, ctx.orig_port, "", "", self.metrics.base("outbound", authority=authority))
