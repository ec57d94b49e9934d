"""Where an outbound opaque (non-HTTP) connection goes: the target's `tcp_routes` /
`tls_routes` (by the ClientHello's SNI), a weighted backend, an endpoint of it (a mixin of
`routing.OutboundRouter`)."""
from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Any

from .endpoints import Endpoint, Kind
from .errors import Blocked, NoEndpoints
from .exchange import ConnCtx
from .profile import Backend, ClientTls, Profile, TlsMode
from .resolve import usable

BLOCKED = "blocked by outbound traffic policy"


@dataclass(frozen=True, slots=True)
class TcpRoute:
    ip: str
    port: int
    identity: str
    server_name: str
    labels: tuple[str, ...]
    origination: ssl.SSLContext | None = None
    """TLS to the backend from its DestinationRule (SIMPLE/MUTUAL), not the mesh's mTLS."""
    permit: Any = None
    """The cluster `Limiter` whose connection slot this connection holds (maxConnections)."""

    def release(self) -> None:
        """The connection is over (call once): its connection slot goes back."""
        if self.permit is not None:
            self.permit.release_connection()


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
    def _cluster(self, prof: Profile, backend: Backend, bt: Any, authority: str) -> tuple[Any, Any]: ...
    def _origination(self, tls: ClientTls) -> ssl.SSLContext: ...

    async def route_tcp(self, ctx: ConnCtx, sni: str | None = None) -> TcpRoute:
        """Where an opaque connection goes; `sni`: the app's ClientHello's server name (None: not TLS)."""
        authority = f"{ctx.orig_ip}:{ctx.orig_port}"
        subset: tuple[tuple[str, str], ...] = ()
        subset_name = ""
        if self.profiles is not None:
            self.resolver.get(authority)  # both lookups at once: the target is the usual answer
            pt = self.profiles.get(authority)
            await pt.wait(self.cfg.resolve_timeout)
            l4 = pt.profile.l4
            r = l4.select(ctx.orig_ip, ctx.orig_port, sni) if l4 else None
            if r is not None:
                backend = r.pick(self.rng)
                authority, subset, subset_name = backend.authority, backend.subset_labels, backend.subset
        t = self.resolver.get(authority)
        await t.wait(self.cfg.resolve_timeout)
        kind = usable(t)
        if kind in (Kind.PASSTHROUGH, Kind.UNKNOWN) and authority != f"{ctx.orig_ip}:{ctx.orig_port}":
            raise NoEndpoints(f"tcp/tls route backend {authority} is not a known service")
        if kind is Kind.ENDPOINTS:
            return await self._endpoint_tcp(t, authority, subset, subset_name)
        if kind is Kind.EMPTY:
            raise NoEndpoints(f"service {authority} has no ready endpoints")
        if kind is Kind.BLOCKED:
            raise Blocked(BLOCKED)
        self._check_loop(ctx)
        return TcpRoute(ctx.orig_ip, ctx.orig_port, "", "", self.metrics.base("outbound", authority=authority))

    async def _endpoint_tcp(self, t: Any, authority: str, subset: tuple[tuple[str, str], ...],
                            subset_name: str) -> TcpRoute:
        """An endpoint of a mesh backend, with the backend's DestinationRule policy (the subset's
        over the host's): load balancer, TLS mode and origination, maxConnections."""
        cluster = None
        if self.profiles is not None:
            bpt = self.profiles.get(authority)
            await bpt.wait(self.cfg.resolve_timeout)
            cluster, subset = self._cluster(bpt.profile, Backend(authority, 1, subset_name, subset), t, authority)
        items = t.state.subset(subset) if subset else t.state.balanced()
        if not items:
            raise NoEndpoints(f"service {authority} has no ready endpoints in the subset {dict(subset)}")
        now = time.monotonic()
        origination = permit = None
        if cluster is None:
            ip, port, identity, server_name = self._dial(self.p2c.choose(items, now).endpoint)
        else:
            policy = cluster.policy
            hk = policy.hash_key
            key = self.cfg.pod_ip.encode() if hk is not None and hk.source_ip else None
            ip, port, identity, server_name = self._dial(cluster.choose(items, now, key).endpoint)
            tls = policy.tls
            if tls.mode is not TlsMode.ISTIO_MUTUAL:
                identity = server_name = ""
                if tls.mode is not TlsMode.DISABLE:
                    origination, server_name = self._origination(tls), tls.sni or authority.rpartition(":")[0]
            lim = cluster.limiter
            if lim is not None and policy.max_connections:
                lim.try_connection()  # Overflow: the connection is refused
                permit = lim
        labels = self.metrics.base(
            "outbound", authority=authority, tls=bool(identity or origination), server_id=identity,
            dst_service=label(t.state.labels, "dst_service", "service"),
            dst_namespace=label(t.state.labels, "dst_namespace", "namespace"))
        return TcpRoute(ip, port, identity, server_name, labels, origination, permit)
