"""The outbound router: where an HTTP request goes (route configuration, clusters, endpoints).
Opaque connections: `tcprouting.py`; inbound: `inbound.py` (both re-exported here)."""
from __future__ import annotations

import random
import ssl
import time
from functools import partial

from . import routes as R
from .balance import P2C
from .client import Pool, Pools
from .cluster import Cluster
from .config import ProxyConfig
from .endpoints import Endpoint, Kind
from .errors import Blocked, LoopDetected, NoEndpoints
from .exchange import ConnCtx, Plan, PlanSeed, Reply, Route
from .hashkey import hash_key, sticky_cookie
from .http1 import RequestHead
from .inbound import InboundRouter
from .metrics import ProxyMetrics, RouteMetrics
from .origination import Originations
from .profile import (
    DEFAULT_POLICY,
    NO_RETRY,
    Backend,
    ClientTls,
    HeaderOps,
    LbPolicy,
    Profile,
    RequestMatch,
    TlsMode,
    TrafficPolicy,
)
from .profile import Route as RouteSpec
from .profiles import Profiles, ProfileTarget
from .resolve import Resolver, Target, normalize_authority, usable
from .tcprouting import BLOCKED, TcpRoute, TcpRouting, label

__all__ = ["BLOCKED", "InboundRouter", "OutboundRouter", "TcpRoute", "fast_policy", "fast_route"]

def _view(head: RequestHead, authority: str, ctx: ConnCtx, prof: Profile) -> R.RequestView:
    """What the route matchers look at (built only when a route needs it)."""
    return R.RequestView(head, authority, int(authority.rpartition(":")[2] or ctx.orig_port), prof.header_names)


def fast_route(spec: RouteSpec, backend: Backend, mirroring: bool) -> bool:
    """An HTTP/1 request on this route and backend needs no per-request policy: no fault, mirror,
    CORS, timeouts, rewrite or header operations, and nothing retried once the request was sent
    (a failed connect may still be retried: nothing was sent, nothing needs buffering)."""
    r = spec.retry
    return (spec.timeout <= 0 and spec.fault is None and (spec.mirror is None or not mirroring)
            and spec.cors is None and spec.rewrite is None and spec.redirect is None and spec.direct is None
            and not spec.request_ops and not spec.response_ops
            and not backend.request_ops and not backend.response_ops
            and r.per_try_timeout <= 0 and not (r.on_5xx or r.on_gateway or r.on_409 or r.on_reset or r.codes))


def fast_policy(policy: TrafficPolicy) -> bool:
    """The cluster needs no per-request bookkeeping: no connection-pool limits, outlier detection,
    per-connection request cap, consistent hashing nor passthrough."""
    return (not policy.limited and not policy.outlier and not policy.max_requests_per_connection
            and policy.lb is not LbPolicy.CONSISTENT_HASH and policy.lb is not LbPolicy.PASSTHROUGH)


class OutboundRouter(TcpRouting):
    def __init__(self, cfg: ProxyConfig, resolver: Resolver, pools: Pools, metrics: ProxyMetrics,
                 p2c: P2C | None = None, profiles: Profiles | None = None, rng: random.Random | None = None,
                 mirror: object = None) -> None:
        self.cfg = cfg
        self.resolver = resolver
        self.pools = pools
        self.upgrade_pools: Pools | None = None
        """HTTP/1 pools whose connections are streams of h2 connections (h2UpgradePolicy: UPGRADE;
        set by `h2.plane.H2Plane`); None: requests stay HTTP/1.1."""
        self.metrics = metrics
        self.p2c = p2c or P2C()
        self.profiles = profiles
        self.rng = rng or random.Random()
        self.mirrors = mirror
        """`mirror.Mirrors` (fire-and-forget copies), None: no mirroring."""
        self._clusters: dict[tuple[object, ...], Cluster] = {}
        self._tls = Originations()
        self._splits: dict[int, int] = {}
        self._split_offset = self.rng.random()
        labels = dict(cfg.pod_labels)
        self._zone = labels.get("topology.kubernetes.io/zone", "")
        self._region = labels.get("topology.kubernetes.io/region", "")
        self._self_ports = (cfg.ports.outbound, cfg.ports.inbound)
        self._cache: dict[tuple[str, int, str, int], tuple[Pool, RouteMetrics]] = {}
        self._authorities: dict[tuple[bytes, int], str] = {}
        """(authority, endpoint-set version, endpoint) → pool and metrics: no label work per request."""
        self._seeds: dict[int, tuple[Backend, Profile, Target, PlanSeed | None]] = {}
        """id(backend) → (backend, profile, target, fast-path seed or None); see `_seed`."""

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

    def route_now(self, head: RequestHead, ctx: ConnCtx, http1: bool = False) -> Route | Reply | None:
        authority = self.authority(head, ctx)
        t = self.resolver.get(authority)
        if not t.answered.is_set():
            return None
        if self.profiles is None:
            return self._pick(t, authority, ctx)
        pt = self.profiles.get(authority)
        if not pt.answered.is_set():
            return None
        prof = pt.profile
        if not prof.routed and prof.policy is DEFAULT_POLICY:
            return self._pick(t, authority, ctx)
        for a in prof.authorities:
            if a != authority and not self.resolver.get(a).answered.is_set():
                return None
        return self._decide(t, pt, head, authority, ctx, http1)

    def route_http1(self, head: RequestHead, ctx: ConnCtx) -> Route | Reply | None:
        """`route_now` for an HTTP/1 request: a route needing no per-request policy (`fast_route`)
        comes without a `Plan` (HTTP/2 streams always get one: gRPC statuses may be retried)."""
        return self.route_now(head, ctx, True)

    async def route(self, head: RequestHead, ctx: ConnCtx) -> Route | Reply:
        authority = self.authority(head, ctx)
        t = self.resolver.get(authority)
        await t.wait(self.cfg.resolve_timeout)
        if self.profiles is None:
            return self._pick(t, authority, ctx)
        pt = self.profiles.get(authority)
        await pt.wait(self.cfg.resolve_timeout)
        prof = pt.profile
        if not prof.routed and prof.policy is DEFAULT_POLICY:
            return self._pick(t, authority, ctx)
        for a in prof.authorities:
            await self.resolver.get(a).wait(self.cfg.resolve_timeout)
        return self._decide(t, pt, head, authority, ctx)

    # === route configuration ===

    def _decide(self, t: Target, pt: ProfileTarget, head: RequestHead, authority: str, ctx: ConnCtx,
                http1: bool = False) -> Route | Reply:
        prof = pt.profile
        routes = prof.routes
        v: R.RequestView | None = None
        if routes and not routes[0].matches:  # a catch-all first route (the default route): nothing to look at
            sel: tuple[RouteSpec, RequestMatch | None] | None = (routes[0], None)
        else:
            v = _view(head, authority, ctx, prof)
            sel = R.select(prof, v) if prof.routed else None
        rng = self.rng
        if sel is None:
            assert v is not None
            if prof.routed:
                return self._reply(404, R.not_found, head, ctx)
            return self._forward(prof, None, None, Backend(authority), t, head, v, authority, ctx)
        spec, match = sel
        if spec.cors is not None:
            v = v or _view(head, authority, ctx, prof)
            pre = R.cors_preflight(spec.cors, v, close=False)
            if pre is not None:
                return self._reply(200, partial(R.cors_preflight, spec.cors, v), head, ctx)
        f = spec.fault
        delay = 0.0
        if f is not None:
            if f.abort_status and f.abort_percent > 0 and rng.random() * 100.0 < f.abort_percent:
                return self._reply(f.abort_status, partial(R.abort, f.abort_status), head, ctx)
            if f.delay and f.delay_percent > 0 and rng.random() * 100.0 < f.delay_percent:
                delay = f.delay
        if spec.redirect is not None:
            v = v or _view(head, authority, ctx, prof)
            return self._reply(spec.redirect.status, partial(R.redirect, spec.redirect, v, match), head, ctx)
        if spec.direct is not None:
            d = spec.direct
            return self._reply(d.status, partial(R.direct, d), head, ctx)
        backend = R.choose_backend(spec, self._split_draw(spec) if len(spec.backends) > 1 else 0.0)
        if http1:
            fast = self._fast(prof, spec, backend, t, authority)
            if fast is not None:
                return fast
        v = v or _view(head, authority, ctx, prof)
        bt = t if backend.authority == authority else self.resolver.get(backend.authority)
        route = self._forward(prof, spec, match, backend, bt, head, v, authority, ctx)
        plan = route.plan
        assert plan is not None
        plan.delay = delay
        if spec.mirror is not None and self.mirrors is not None and \
                (spec.mirror.percent >= 100.0 or rng.random() * 100.0 < spec.mirror.percent):
            plan.mirror = spec.mirror
        ro, bo = spec.response_ops, backend.response_ops
        ops = ((ro, bo) if bo else (ro,)) if ro else ((bo,) if bo else ())
        if spec.cors is not None:
            origin = R.cors_origin(spec.cors, v)
            if origin is not None:
                ops += (R.cors_response_ops(spec.cors, origin),)
        plan.resp_ops = plan.resp_ops + ops if plan.resp_ops else ops  # after a generated sticky cookie
        return route

    def _split_draw(self, spec: object) -> float:
        """The next point of the route's Weyl sequence (golden ratio) in [0, 1): evenly spread, so
        backend shares match their weights closely over any run of requests (a random draw over
        500 requests strays by more than 5% now and then)."""
        key = id(spec)
        n = self._splits.get(key, 0) + 1
        if len(self._splits) > 10000:
            self._splits.clear()
        self._splits[key] = n
        return (self._split_offset + n * 0.6180339887498949) % 1.0

    def _reply(self, status: int, make: object, head: RequestHead, ctx: ConnCtx) -> Reply:
        return Reply(status, make, self.error_metrics(head, ctx))  # type: ignore[arg-type]

    def _cluster(self, prof: Profile, backend: Backend, bt: Target,
                 authority: str) -> tuple[Cluster, tuple[tuple[str, str], ...]]:
        """The backend's cluster (policy, balancer, budget) and the subset's labels."""
        bprof = prof if bt.path == authority or self.profiles is None else self.profiles.get(bt.path).profile
        policy = bprof.policy_for(backend.subset)
        subset = backend.subset_labels or (bprof.subset_labels(backend.subset) if backend.subset else ())
        key = (bt.path, subset)
        cluster = self._clusters.get(key)
        if cluster is None or (cluster.policy is not policy and cluster.policy != policy):
            if len(self._clusters) > 4096:
                self._clusters.clear()
                self._seeds.clear()
            cluster = self._clusters[key] = Cluster(policy, prof.budget, self.p2c, self.rng, time.monotonic(),
                                                    self._zone, self._region, partial(self.metrics.overflow, bt.path))
        return cluster, subset

    def _forward(self, prof: Profile, spec: object, match: object, backend: Backend, bt: Target,
                 head: RequestHead, v: R.RequestView, authority: str, ctx: ConnCtx) -> Route:
        cluster, subset = self._cluster(prof, backend, bt, authority)
        policy = cluster.policy
        up_head = R.upstream_head(head, spec, match, backend, v) if spec is not None else head  # type: ignore[arg-type]
        plan = Plan(spec, up_head, cluster, bt, subset, authority,  # type: ignore[arg-type]
                    spec.retry if spec is not None else NO_RETRY)  # type: ignore[attr-defined]
        hk = policy.hash_key
        if hk is not None and policy.lb is LbPolicy.CONSISTENT_HASH:
            plan.hash_key = hash_key(hk, v, self.cfg.pod_ip)
            if plan.hash_key is None and hk.cookie and hk.cookie_ttl > 0:  # generate the cookie and set it
                value = f"{self.rng.getrandbits(64):016x}"
                plan.hash_key = value.encode()
                plan.resp_ops = (HeaderOps((), (sticky_cookie(hk.cookie, value, hk.cookie_ttl, hk.cookie_path),),
                                           frozenset()),)
        return self.endpoint_route(plan, ctx)

    def _seed(self, prof: Profile, spec: RouteSpec, backend: Backend, t: Target, authority: str) -> PlanSeed | None:
        """The fast path's seed of a route and backend (None: the request needs a `Plan`). Cached
        for a backend of the target itself: its policy comes from `prof`, so it holds while `prof` does."""
        e = self._seeds.get(id(backend))
        if e is not None and e[0] is backend and e[1] is prof and e[2] is t:
            return e[3]
        seed = None
        if fast_route(spec, backend, self.mirrors is not None):
            bt = t if backend.authority == authority else self.resolver.get(backend.authority)
            cluster, subset = self._cluster(prof, backend, bt, authority)
            if fast_policy(cluster.policy):
                seed = PlanSeed(spec, cluster, bt, subset, authority)
        if backend.authority == authority:
            if len(self._seeds) > 4096:
                self._seeds.clear()
            self._seeds[id(backend)] = (backend, prof, t, seed)
        return seed

    def _fast(self, prof: Profile, spec: RouteSpec, backend: Backend, t: Target, authority: str) -> Route | None:
        """The fast path's route (no `Plan`); None when the request needs the planned path."""
        seed = self._seed(prof, spec, backend, t, authority)
        if seed is None:
            return None
        bt = seed.target
        if usable(bt) is not Kind.ENDPOINTS:
            return None
        items = bt.state.subset(seed.subset)
        if not items:
            return None
        cluster = seed.cluster
        b = cluster.choose(items, time.monotonic(), None)
        pool, metrics = self._endpoint(authority, bt, cluster.policy.tls, b.endpoint, cluster.policy.h2_upgrade)
        return Route(pool, metrics, b.load, None, seed)

    def endpoint_route(self, plan: Plan, ctx: ConnCtx) -> Route:
        """An endpoint of the plan's cluster (the first try or a retry)."""
        bt = plan.target
        kind = usable(bt)
        m = self.metrics
        cluster = plan.cluster
        if kind is Kind.ENDPOINTS and cluster.policy.lb is not LbPolicy.PASSTHROUGH:
            items = bt.state.subset(plan.subset)
            if not items:
                raise NoEndpoints(f"service {bt.path} has no ready endpoints in the subset {dict(plan.subset)}")
            b = cluster.choose(items, time.monotonic(), plan.hash_key)
            ep = b.endpoint
            plan.addr = ep.addr
            pool, metrics = self._endpoint(plan.authority, bt, cluster.policy.tls, ep, cluster.policy.h2_upgrade)
            return Route(pool, metrics, b.load, plan)
        if kind is Kind.EMPTY:
            raise NoEndpoints(f"service {bt.path} has no ready endpoints")
        if kind is Kind.BLOCKED:
            raise Blocked(BLOCKED)
        self._check_loop(ctx)
        plan.addr = (ctx.orig_ip, ctx.orig_port)
        tls = cluster.policy.tls
        if tls.mode in (TlsMode.SIMPLE, TlsMode.MUTUAL):  # TLS origination to an external server
            pool = self._pool(ctx.orig_ip, ctx.orig_port, "", tls.sni or plan.authority.rpartition(":")[0], "", "",
                              self._origination(tls))
            return Route(pool, m.route(m.base("outbound", authority=plan.authority, tls=True)), None, plan)
        pool = self._pool(ctx.orig_ip, ctx.orig_port, "", "", "", "")
        return Route(pool, m.route(m.base("outbound", authority=plan.authority)), None, plan)

    def _endpoint(self, authority: str, bt: Target, tls: ClientTls, ep: Endpoint,
                  upgrade: bool = False) -> tuple[Pool, RouteMetrics]:
        """The pool and the metrics of requests for `authority` to one endpoint of `bt` (cached).
        `upgrade` (h2UpgradePolicy): to a meshed endpoint over mTLS, HTTP/1.1 goes as h2 streams."""
        key = (authority, bt.path, tls.mode, tls if tls.mode.value >= 2 else None, bt.state.version, ep.ip, ep.port,
               upgrade)
        cached = self._cache.get(key)
        if cached is None:
            m = self.metrics
            svc = label(bt.state.labels, "dst_service", "service")
            ns = label(bt.state.labels, "dst_namespace", "namespace")
            ip, port, identity, server_name = self._dial(ep)
            origination = None
            if tls.mode is not TlsMode.ISTIO_MUTUAL:
                identity = server_name = ""
                if tls.mode is not TlsMode.DISABLE:
                    origination, server_name = self._origination(tls), tls.sni or bt.path.rpartition(":")[0]
            labels = m.base("outbound", authority=authority, tls=bool(identity or origination),
                            server_id=identity, dst_service=svc, dst_namespace=ns)
            if len(self._cache) > 10000:
                self._cache.clear()
            pool = self._pool(ip, port, identity, server_name, svc, ns, origination)
            if upgrade and identity and self.upgrade_pools is not None:
                pool = self.upgrade_pools.get(ip, port, identity, server_name, pool.metrics.labels  # type: ignore[union-attr]
                                              if pool.metrics is not None else ())
            cached = self._cache[key] = (pool, m.route(labels))
        return cached  # type: ignore[return-value]

    def _origination(self, tls: ClientTls) -> ssl.SSLContext:
        """The client context of a DestinationRule's SIMPLE/MUTUAL TLS (cached per settings)."""
        return self._tls.get(tls)

    def mirror_pool(self, mirror: object) -> Pool | None:
        """A pool to an endpoint of the mirror backend (None when it has none now)."""
        backend = mirror.backend  # type: ignore[attr-defined]
        bt = self.resolver.get(backend.authority)
        if usable(bt) is not Kind.ENDPOINTS:
            return None
        subset = backend.subset_labels
        if not subset and backend.subset and self.profiles is not None:
            subset = self.profiles.get(backend.authority).profile.subset_labels(backend.subset)
        items = bt.state.subset(subset)
        if not items:
            return None
        ep = self.p2c.choose(items, time.monotonic()).endpoint
        ip, port, identity, server_name = self._dial(ep)
        return self._pool(ip, port, identity, server_name, label(bt.state.labels, "dst_service", "service"),
                          label(bt.state.labels, "dst_namespace", "namespace"))

    def count_retry(self, authority: str, what: str) -> None:
        self.metrics.retry(authority, what)

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
                svc = label(t.state.labels, "dst_service", "service")
                ns = label(t.state.labels, "dst_namespace", "namespace")
                ip, port, identity, server_name = self._dial(ep)
                labels = m.base("outbound", authority=authority, tls=bool(identity), server_id=identity,
                                dst_service=svc, dst_namespace=ns)
                if len(self._cache) > 10000:
                    self._cache.clear()
                cached = self._cache[key] = (self._pool(ip, port, identity, server_name, svc, ns), m.route(labels))
            return Route(cached[0], cached[1], b.load)
        if kind is Kind.EMPTY:
            raise NoEndpoints(f"service {authority} has no ready endpoints")
        if kind is Kind.BLOCKED:
            raise Blocked(BLOCKED)
        self._check_loop(ctx)
        pool = self._pool(ctx.orig_ip, ctx.orig_port, "", "", "", "")
        return Route(pool, m.route(m.base("outbound", authority=authority)), None)

    def _dial(self, ep: Endpoint) -> tuple[str, int, str, str]:
        """Where to connect for an endpoint. Our own pod is reached directly on the app's port:
        the proxy's own connections to the pod address would never pass its inbound side."""
        if self.cfg.pod_ip and ep.ip == self.cfg.pod_ip:
            return self.cfg.inbound_app_ip, ep.port, "", ""
        return ep.ip, ep.port, ep.identity, ep.server_name

    def _pool(self, ip: str, port: int, identity: str, server_name: str, svc: str, ns: str,
              origination: ssl.SSLContext | None = None) -> Pool:
        tcp = self.metrics.base("outbound", tls=bool(identity or origination), server_id=identity, dst_service=svc,
                                dst_namespace=ns) + ("dst",)
        return self.pools.get(ip, port, identity, server_name, tcp, origination)

    def _check_loop(self, ctx: ConnCtx) -> None:
        if ctx.orig_port in self._self_ports and ctx.orig_ip in (self.cfg.pod_ip, "127.0.0.1", "0.0.0.0"):
            raise LoopDetected(f"connection to the proxy itself ({ctx.orig_ip}:{ctx.orig_port})")
