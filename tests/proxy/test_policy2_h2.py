"""HTTP/2 traffic-policy additions in memory (client ⇄ proxy ⇄ app, no sockets): the client's
`grpc-timeout` enforced by the proxy, request trailers passed through, http2MaxRequests and
maxRequestsPerConnection."""
from __future__ import annotations

import asyncio
import random
import time

import h2.config
import h2.connection
import h2.events
import pytest
from meshlet.proxy.balance import P2C
from meshlet.proxy.client import Pool
from meshlet.proxy.cluster import Cluster, Limiter
from meshlet.proxy.errors import Overflow
from meshlet.proxy.exchange import Plan, Route
from meshlet.proxy.h2 import grpc
from meshlet.proxy.h2.upstream import H2Upstream
from meshlet.proxy.profile import NO_RETRY, Budget, TrafficPolicy
from test_h2_unit import GRPC_REQ, MemTransport, Mesh, body_of, scrape


def test_grpc_timeout_parsing() -> None:
    assert grpc.timeout_of([(b"grpc-timeout", b"250m")]) == 0.25
    assert grpc.timeout_of([(b"grpc-timeout", b"2S")]) == 2.0
    assert grpc.timeout_of([(b"grpc-timeout", b"1H")]) == 3600.0
    assert abs(grpc.timeout_of([(b"grpc-timeout", b"1500u")]) - 0.0015) < 1e-12  # type: ignore[operator]
    assert grpc.timeout_of([(b"grpc-timeout", b"123456789S")]) is None  # more than 8 digits
    assert grpc.timeout_of([(b"grpc-timeout", b"10x")]) is None
    assert grpc.timeout_of([(b"grpc-timeout", b"S")]) is None
    assert grpc.timeout_of([(b"x", b"1S")]) is None


async def _until(m: Mesh, cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m.pump()
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_grpc_timeout_gives_deadline_exceeded_and_cancels_upstream() -> None:
    m = Mesh()  # the app never answers
    sid = m.request(GRPC_REQ + [(b"grpc-timeout", b"100m")], b"\x00\x00\x00\x00\x00")
    await _until(m, lambda: m.got(sid, h2.events.ResponseReceived))
    resp = m.got(sid, h2.events.ResponseReceived)[0]
    h = dict(resp.headers)
    assert h[b":status"] == b"200" and h[b"grpc-status"] == b"4"
    assert resp.stream_ended is not None  # trailers-only
    await _until(m, lambda: any(isinstance(e, h2.events.StreamReset) for e in m.app_events))
    assert 'grpc_status_code="4"' in scrape(m.metrics)
    assert not m.srv.streams


async def test_grpc_call_within_its_deadline_is_untouched() -> None:
    m = Mesh()

    def app(ev) -> None:
        if isinstance(ev, h2.events.StreamEnded):
            m.app.send_headers(ev.stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc")])
            m.app.send_headers(ev.stream_id, [(b"grpc-status", b"0")], end_stream=True)

    m.on_app = app
    sid = m.request(GRPC_REQ + [(b"grpc-timeout", b"5S")], b"\x00\x00\x00\x00\x00")
    m.pump()
    assert dict(m.got(sid, h2.events.TrailersReceived)[0].headers)[b"grpc-status"] == b"0"
    ex_timers = [s for s in m.srv.streams.values()]
    assert not ex_timers  # done, its deadline timer cancelled


async def test_request_trailers_reach_the_app() -> None:
    m = Mesh()
    seen: list = []

    def app(ev) -> None:
        if isinstance(ev, h2.events.TrailersReceived):
            seen.append(dict(ev.headers))
        if isinstance(ev, h2.events.StreamEnded):
            m.app.send_headers(ev.stream_id, [(b":status", b"200")], end_stream=True)

    m.on_app = app
    sid = m.client.get_next_available_stream_id()
    m.client.send_headers(sid, GRPC_REQ)
    m.client.send_data(sid, b"\x00\x00\x00\x00\x01x")
    m.client.send_headers(sid, [(b"x-checksum", b"abc")], end_stream=True)
    m.pump()
    assert seen == [{b"x-checksum": b"abc"}]
    assert body_of(m.app_events) == b"\x00\x00\x00\x00\x01x"
    assert m.got(sid, h2.events.StreamEnded)


# === connection pool: http2MaxRequests, maxRequestsPerConnection ===

class PlanRouter:
    """Routes every stream to one cluster with the given policy (a `Plan` per request)."""

    def __init__(self, metrics, policy: TrafficPolicy) -> None:
        self.m = metrics
        self.overflows: list[str] = []
        self.cluster = Cluster(policy, Budget(), P2C(), random.Random(1), time.monotonic(),
                               on_overflow=self.overflows.append)

    def route_now(self, head, ctx):
        plan = Plan(None, head, self.cluster, None, (), "svc:80", NO_RETRY)
        return Route(Pool("127.0.0.1", 1, "", "", None, None), self.error_metrics(head, ctx), None, plan)  # type: ignore[arg-type]

    def error_metrics(self, head, ctx):
        return self.m.route(self.m.base("outbound", authority="svc:80"))


GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"svc:80")]


async def test_http2_max_requests_overflows_with_503_and_frees_its_slot() -> None:
    m = Mesh()
    m.router = m.srv.router = PlanRouter(m.metrics, TrafficPolicy(max_requests=1))
    first = m.request(GET)
    m.pump()
    second = m.request(GET)
    grpc_call = m.request(GRPC_REQ, b"\x00\x00\x00\x00\x00")
    m.pump()
    h = dict(m.got(second, h2.events.ResponseReceived)[0].headers)
    assert h[b":status"] == b"503" and h[b"meshlet-proxy-error"].startswith(b"overflow")
    g = dict(m.got(grpc_call, h2.events.ResponseReceived)[0].headers)
    assert g[b"grpc-status"] == b"14"  # UNAVAILABLE for gRPC
    assert m.srv.router.overflows == ["requests", "requests"]
    m.app.send_headers(1, [(b":status", b"200")], end_stream=True)  # the first one finishes
    m.pump()
    assert dict(m.got(first, h2.events.ResponseReceived)[0].headers)[b":status"] == b"200"
    assert m.srv.router.cluster.limiter.requests == 0
    third = m.request(GET)
    m.pump()
    assert not m.got(third, h2.events.ResponseReceived)  # reached the app, waits for its answer
    assert m.srv.router.cluster.limiter.requests == 1


async def test_client_reset_gives_the_request_slot_back() -> None:
    m = Mesh()
    m.router = m.srv.router = PlanRouter(m.metrics, TrafficPolicy(max_requests=1))
    sid = m.request(GET)
    m.pump()
    m.client.reset_stream(sid, 8)
    m.pump()
    assert m.srv.router.cluster.limiter.requests == 0


async def test_limiter_kinds() -> None:
    kinds: list[str] = []
    lim = Limiter(1, 0, 2, kinds.append)
    lim.acquire_stream()
    lim.acquire_stream()
    with pytest.raises(Overflow, match="overflow"):
        lim.acquire_stream()
    lim.release_stream()
    await lim.acquire()  # HTTP/1: a request slot and the one connection
    assert lim.requests == 2 and lim.active == 1
    with pytest.raises(Overflow, match="overflow"):
        lim.try_connection()  # opaque TCP: no connection left
    lim.release()
    lim.try_connection()
    lim.release_connection()
    assert kinds == ["requests", "connections"] and lim.active == 0 and lim.requests == 1


class _Pool:
    idle_timeout = 60.0

    def __init__(self) -> None:
        self.forgotten: list = []

    def forget(self, up) -> None:
        self.forgotten.append(up)


async def test_h2_upstream_takes_max_requests_per_connection_then_retires() -> None:
    pool = _Pool()
    up = H2Upstream(None, pool)  # type: ignore[arg-type]
    t = MemTransport()
    up.connection_made(t)
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    server.receive_data(t.take())
    up.data_received(server.data_to_send())

    class Sink:
        def __getattr__(self, name):
            return lambda *a: None

    assert up.has_capacity(2)
    a = up.open(GET, True, Sink(), 2)  # type: ignore[arg-type]
    assert up.has_capacity(2) and not up.spent
    b = up.open(GET, True, Sink(), 2)  # type: ignore[arg-type]
    assert up.spent and not up.has_capacity(2) and not up.has_capacity() and pool.forgotten == [up]
    server.receive_data(t.take())
    server.send_headers(a, [(b":status", b"200")], end_stream=True)
    up.data_received(server.data_to_send())
    assert not t.closing  # one stream still open
    server.send_headers(b, [(b":status", b"200")], end_stream=True)
    up.data_received(server.data_to_send())
    assert t.closing and not up.alive  # retired once its streams are done
