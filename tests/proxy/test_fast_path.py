"""The HTTP/1 fast path: which routes need no per-request policy (pure predicates), what the
outbound router hands the HTTP/1 server for them (no `Plan`), and that a failed connect on a
fast route is still retried (HttpServer with in-memory transports)."""
from __future__ import annotations

import asyncio
import time

import pytest

from meshlet.api import destination_pb as pb
from meshlet.controller.log import setup
from meshlet.destination.profiles import default_route, retry_budget
from meshlet.proxy.client import Pools
from meshlet.proxy.config import ProxyConfig
from meshlet.proxy.endpoints import Add, Endpoint, labels_of
from meshlet.proxy.errors import ConnectError
from meshlet.proxy.exchange import ConnCtx, Reply, Route
from meshlet.proxy.http1 import RequestHead, RequestParser
from meshlet.proxy.metrics import ProxyMetrics
from meshlet.proxy.profile import LbPolicy, TrafficPolicy, compile_profile
from meshlet.proxy.profiles import Profiles
from meshlet.proxy.resolve import Resolver
from meshlet.proxy.routing import OutboundRouter, fast_policy, fast_route
from meshlet.proxy.server import HttpServer
from test_route_flow import OK, until
from test_server_unit import FakeConnector

WEB = "web.demo.svc.cluster.local:80"
WEB_ID = "spiffe://cluster.local/ns/demo/sa/web"
GET = b"GET /x HTTP/1.1\r\nHost: " + WEB.encode() + b"\r\n\r\n"


def compiled(routes: list[pb.Route], **kw: object):  # noqa: ANN201
    return compile_profile(pb.DestinationProfile(fully_qualified_name=WEB.rpartition(":")[0], routes=routes,
                                                 retry_budget=retry_budget(), **kw), {}, "demo")


def route(**kw: object) -> pb.Route:
    """The default route destination sends (Istio's default retries), with `kw` set on it."""
    r = default_route(WEB)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_the_default_route_is_fast() -> None:
    spec = compiled([default_route(WEB)]).routes[0]
    assert spec.retry.attempts == 2 and spec.retry.on_connect  # Istio's default: connect failures are retried
    assert fast_route(spec, spec.backends[0], mirroring=True)


@pytest.mark.parametrize("kw", [
    {"timeout_ms": 1000},
    {"fault": pb.Fault(abort_http_status=418, abort_percent=1)},
    {"fault": pb.Fault(delay_ms=10, delay_percent=1)},
    {"mirror": pb.Mirror(authority="shadow:80", percent=100)},
    {"cors": pb.CorsPolicy(allow_origins=[pb.StringMatch(exact="http://a")])},
    {"rewrite": pb.Rewrite(uri="/v2")},
    {"request_headers": pb.HeaderOps(set={"x-a": "1"})},
    {"response_headers": pb.HeaderOps(remove=["server"])},
    {"retry": pb.RetryPolicy(attempts=2, retry_on=["5xx"])},
    {"retry": pb.RetryPolicy(attempts=2, retry_on=["gateway-error"])},
    {"retry": pb.RetryPolicy(attempts=2, retry_on=["reset"])},
    {"retry": pb.RetryPolicy(attempts=2, retry_on=["connect-failure"], per_try_timeout_ms=100)},
    {"retry": pb.RetryPolicy(attempts=2, retry_on=["retriable-status-codes"], retriable_status_codes=[409])},
])
def test_routes_with_per_request_policy_are_not_fast(kw: dict) -> None:
    spec = compiled([route(**kw)]).routes[0]
    assert not fast_route(spec, spec.backends[0], mirroring=True)


def test_a_mirror_counts_only_when_mirroring_runs_and_backend_header_ops_count() -> None:
    spec = compiled([route(mirror=pb.Mirror(authority="shadow:80", percent=100))]).routes[0]
    assert fast_route(spec, spec.backends[0], mirroring=False)
    r = default_route(WEB)
    r.backends[0].request_headers = pb.HeaderOps(add={"x-b": "1"})
    spec = compiled([r]).routes[0]
    assert not fast_route(spec, spec.backends[0], mirroring=True)


def test_fast_policy() -> None:
    assert fast_policy(TrafficPolicy())
    assert fast_policy(TrafficPolicy(lb=LbPolicy.ROUND_ROBIN, connect_timeout=1.0, locality=True))
    for slow in (TrafficPolicy(max_connections=1), TrafficPolicy(max_pending=1),
                 TrafficPolicy(consecutive_5xx=3), TrafficPolicy(consecutive_gateway=3),
                 TrafficPolicy(max_requests=1), TrafficPolicy(max_requests_per_connection=1),
                 TrafficPolicy(lb=LbPolicy.CONSISTENT_HASH),
                 TrafficPolicy(lb=LbPolicy.PASSTHROUGH)):
        assert not fast_policy(slow), slow


# === the router ===

def head(raw: bytes = GET) -> RequestHead:
    ev = RequestParser().feed(raw)[0]
    assert isinstance(ev, RequestHead)
    return ev


def make_router(profile, connector: object = None, endpoints: int = 1) -> OutboundRouter:  # noqa: ANN001
    cfg = ProxyConfig()
    metrics = ProxyMetrics("demo", "client")
    log = setup("test")
    resolver, profiles = Resolver(cfg, metrics, log), Profiles(cfg, log)
    eps = tuple(Endpoint(f"10.0.0.{i + 1}", 80, identity=WEB_ID) for i in range(endpoints))
    resolver.get(WEB).state.apply(Add(eps, labels_of({"service": "web", "namespace": "demo"}.items())),
                                  time.monotonic(), snapshot=True)
    profiles.get(WEB).profile = profile
    pools = Pools(connector or FakeConnector(), metrics, max_idle=8, idle_timeout=60.0)  # type: ignore[arg-type]
    return OutboundRouter(cfg, resolver, pools, metrics, profiles=profiles)


CTX = ConnCtx("outbound", "198.19.0.4", 80)


async def test_http1_requests_on_the_default_route_carry_no_plan() -> None:
    router = make_router(compiled([default_route(WEB)]))
    fast = router.route_http1(head(), CTX)
    planned = router.route_now(head(), CTX)  # HTTP/2 streams: always planned (gRPC statuses are retried)
    assert isinstance(fast, Route) and isinstance(planned, Route)
    assert fast.plan is None and fast.seed is not None and planned.plan is not None and planned.seed is None
    assert (fast.pool, fast.metrics) == (planned.pool, planned.metrics)  # same endpoint, same series
    plan = fast.seed.plan(head(), ("10.0.0.1", 80))
    assert (plan.retry, plan.cluster, plan.authority, plan.timeout) == \
        (planned.plan.retry, planned.plan.cluster, planned.plan.authority, 0.0)


async def test_matched_routes_are_fast_too_and_policies_keep_the_plan() -> None:
    jason = pb.Route(name="jason", backends=[pb.WeightedDst(authority=WEB, weight=100)], matches=[
        pb.RequestMatch(headers=[pb.HeaderMatch(name="end-user", value=pb.StringMatch(exact="jason"))])])
    retried = route(retry=pb.RetryPolicy(attempts=2, retry_on=["5xx"]))
    router = make_router(compiled([jason, retried]))
    got = router.route_http1(head(GET.replace(b"\r\n\r\n", b"\r\nend-user: jason\r\n\r\n")), CTX)
    assert isinstance(got, Route) and got.plan is None and got.seed is not None
    other = router.route_http1(head(), CTX)
    assert isinstance(other, Route) and other.plan is not None and other.plan.retry.on_5xx
    nothing = make_router(compiled([jason])).route_http1(head(), CTX)
    assert isinstance(nothing, Reply) and nothing.status == 404


async def test_a_cluster_policy_keeps_the_plan() -> None:
    policy = pb.TrafficPolicy(connection_pool=pb.ConnectionPool(max_connections=5))
    router = make_router(compiled([default_route(WEB)], traffic_policy=policy))
    got = router.route_http1(head(), CTX)
    assert isinstance(got, Route) and got.plan is not None and got.plan.cluster.limiter is not None


# === connect failures on a fast route ===

class FailFirst(FakeConnector):
    """Refuses the first connect (to whichever endpoint), then connects."""

    async def connect(self, ip, port, identity, server_name, protocol, **kw):  # noqa: ANN001, ANN003, ANN201
        if not getattr(self, "refused", False):
            self.refused = True
            raise ConnectError(f"connect to {ip}:{port} failed: Connection refused")
        return await super().connect(ip, port, identity, server_name, protocol, **kw)


async def test_a_failed_connect_on_a_fast_route_is_retried() -> None:
    from test_server_unit import FakeTransport

    connector = FailFirst()
    router = make_router(compiled([default_route(WEB)]), connector, endpoints=2)
    retried: list[str] = []
    router.count_retry = lambda authority, what: retried.append(what or "retry")  # type: ignore[method-assign]
    server = HttpServer(router, CTX, None, set(), setup("test"))
    down = FakeTransport()
    server.attach(down, b"")  # type: ignore[arg-type]
    server.data_received(GET)
    await until(lambda: len(connector.connections) == 1, "the retry's connection")
    t, up = connector.connections[0]
    assert t.data().startswith(b"GET /x HTTP/1.1\r\n")
    up.data_received(OK)
    assert down.data() == OK and retried == ["retry"]
    server.data_received(GET)  # the next request: fast path again (pooled or a new connection)
    sent = lambda: sum(c[0].data().count(b"GET /x") for c in connector.connections)  # noqa: E731
    await until(lambda: sent() == 2, "second request")
    last = connector.connections[-1][1] if len(connector.connections) == 2 else up
    last.data_received(OK)
    assert down.data() == OK + OK and retried == ["retry"]


async def test_the_fast_decision_follows_profile_updates() -> None:
    router = make_router(compiled([default_route(WEB)]))
    assert router.route_http1(head(), CTX).plan is None  # type: ignore[union-attr]
    assert router.route_http1(head(), CTX).plan is None  # type: ignore[union-attr]  # (cached)
    limited = pb.TrafficPolicy(connection_pool=pb.ConnectionPool(max_connections=5))
    router.profiles.get(WEB).profile = compiled([default_route(WEB)], traffic_policy=limited)  # type: ignore[union-attr]
    assert router.route_http1(head(), CTX).plan is not None  # type: ignore[union-attr]
    router.profiles.get(WEB).profile = compiled([route(timeout_ms=500)])  # type: ignore[union-attr]
    got = router.route_http1(head(), CTX)
    assert got.plan is not None and got.plan.timeout == 0.5  # type: ignore[union-attr]
    router.profiles.get(WEB).profile = compiled([default_route(WEB)])  # type: ignore[union-attr]
    assert router.route_http1(head(), CTX).plan is None  # type: ignore[union-attr]
