"""HTTP/2 through the proxy, in memory: a fake client's H2Connection ⇄ H2Server ⇄ H2Upstream ⇄ a
fake app's H2Connection, with a stand-in router (no sockets)."""
from __future__ import annotations

import asyncio
import random

import h2.config
import h2.connection
import h2.events
import pytest
import structlog
from meshlet.proxy.client import Pool
from meshlet.proxy.errors import NoEndpoints, ProtocolError
from meshlet.proxy.exchange import ConnCtx, Route
from meshlet.proxy.h2 import grpc
from meshlet.proxy.h2.heads import from_http1, request_head, upstream_headers
from meshlet.proxy.h2.server import H2Server
from meshlet.proxy.h2.upstream import H2Upstream
from meshlet.proxy.metrics import ProxyMetrics


class MemTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closing = False
        self.protocol = None

    def write(self, data: bytes) -> None:
        self.out += data

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return default


class FakeH2Pool:
    idle_timeout = 60.0

    def __init__(self) -> None:
        self.up: H2Upstream | None = None
        self.transport = MemTransport()

    def take(self) -> H2Upstream:
        if self.up is None:
            self.up = H2Upstream(None, self)  # type: ignore[arg-type]
            self.up.connection_made(self.transport)
        return self.up

    async def acquire(self, timeout: float = 0.0) -> H2Upstream:
        return self.take()

    def forget(self, up: H2Upstream) -> None:
        pass


class FakePools:
    def __init__(self) -> None:
        self.pool = FakeH2Pool()

    def get(self, pool: Pool) -> FakeH2Pool:
        return self.pool


class FakeRouter:
    def __init__(self, metrics: ProxyMetrics, fail: Exception | None = None) -> None:
        self.m = metrics
        self.fail = fail
        self.heads = []

    def route_now(self, head, ctx):
        self.heads.append(head)
        if self.fail is not None:
            raise self.fail
        return Route(Pool("127.0.0.1", 1, "", "", None, None), self.error_metrics(head, ctx))  # type: ignore[arg-type]

    def error_metrics(self, head, ctx):
        return self.m.route(self.m.base("outbound", authority="svc:80"))


class Mesh:
    """client ⇄ proxy ⇄ app, all in memory; `pump()` moves bytes until nothing moves."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.metrics = ProxyMetrics("ns", "pod")
        self.router = FakeRouter(self.metrics, fail)
        self.pools = FakePools()
        self.down = MemTransport()
        self.srv = H2Server(self.router, ConnCtx("outbound", "10.0.0.1", 80), None, self.pools, set(),  # type: ignore[arg-type]
                            structlog.get_logger(), random.Random(1))
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.app = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.app.initiate_connection()
        self.client.initiate_connection()
        self.client_events: list = []
        self.app_events: list = []
        self.srv.attach(self.down, self.client.data_to_send())
        self.on_app = None
        self.client_acks = True

    def pump(self) -> None:
        for _ in range(200):
            moved = False
            data = self.client.data_to_send()
            if data:
                moved = True
                self.srv.data_received(data)
            data = self.down.take()
            if data:
                moved = True
                evs = self.client.receive_data(data)
                self.client_events += evs
                if self.client_acks:
                    for ev in evs:
                        if isinstance(ev, h2.events.DataReceived):
                            self.client.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            data = self.pools.pool.transport.take()
            if data:
                moved = True
                evs = self.app.receive_data(data)
                self.app_events += evs
                for ev in evs:
                    if isinstance(ev, h2.events.DataReceived):
                        self.app.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    if self.on_app is not None:
                        self.on_app(ev)
            data = self.app.data_to_send() if self.pools.pool.up is not None else b""
            if data:
                moved = True
                self.pools.pool.up.data_received(data)  # type: ignore[union-attr]
            if not moved:
                return
        raise AssertionError("bytes keep moving")

    def request(self, headers: list, body: bytes = b"", end: bool = True) -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, headers, end_stream=not body and end)
        if body:
            self.client.send_data(sid, body, end_stream=end)
        return sid

    def got(self, sid: int, kind: type) -> list:
        return [e for e in self.client_events if isinstance(e, kind) and getattr(e, "stream_id", None) == sid]


GRPC_REQ = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/pkg.Svc/Call"),
            (b":authority", b"svc:80"), (b"content-type", b"application/grpc"), (b"te", b"trailers")]


def body_of(events: list) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))


def scrape(metrics: ProxyMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


async def test_grpc_call_with_trailers_through_the_proxy() -> None:
    m = Mesh()

    def app(ev) -> None:
        if isinstance(ev, h2.events.StreamEnded):
            sid = ev.stream_id
            m.app.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
            m.app.send_data(sid, b"\x00\x00\x00\x00\x02hi")
            m.app.send_headers(sid, [(b"grpc-status", b"0"), (b"grpc-message", b"")], end_stream=True)

    m.on_app = app
    sid = m.request(GRPC_REQ, b"\x00\x00\x00\x00\x03abc")
    m.pump()
    reqs = [e for e in m.app_events if isinstance(e, h2.events.RequestReceived)]
    assert reqs and dict(reqs[0].headers)[b":path"] == b"/pkg.Svc/Call"
    assert dict(reqs[0].headers)[b":authority"] == b"svc:80"
    assert body_of(m.app_events) == b"\x00\x00\x00\x00\x03abc"
    assert dict(m.got(sid, h2.events.ResponseReceived)[0].headers)[b":status"] == b"200"
    assert body_of(m.got(sid, h2.events.DataReceived)) == b"\x00\x00\x00\x00\x02hi"
    trailers = m.got(sid, h2.events.TrailersReceived)
    assert dict(trailers[0].headers)[b"grpc-status"] == b"0"
    assert m.got(sid, h2.events.StreamEnded)
    text = scrape(m.metrics)
    assert 'grpc_status_code="0"' in text and 'classification="success"' in text
    assert not m.srv.streams


async def test_grpc_error_status_classified_as_failure() -> None:
    m = Mesh()
    m.on_app = lambda ev: isinstance(ev, h2.events.StreamEnded) and m.app.send_headers(
        ev.stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"14")],
        end_stream=True)
    sid = m.request(GRPC_REQ, b"\x00\x00\x00\x00\x00")
    m.pump()
    assert dict(m.got(sid, h2.events.ResponseReceived)[0].headers)[b"grpc-status"] == b"14"
    text = scrape(m.metrics)
    assert 'classification="failure"' in text and 'grpc_status_code="14"' in text


async def test_large_response_respects_flow_control() -> None:
    m = Mesh()
    payload = bytes(range(256)) * 1200  # 300 KiB: several windows

    def app(ev) -> None:
        if isinstance(ev, h2.events.StreamEnded):
            m.app.send_headers(ev.stream_id, [(b":status", b"200")])
            m.pending = [ev.stream_id, payload]
        if isinstance(ev, (h2.events.StreamEnded, h2.events.WindowUpdated)) and getattr(m, "pending", None):
            sid, rest = m.pending
            while rest:
                w = min(m.app.local_flow_control_window(sid), m.app.max_outbound_frame_size)
                if w <= 0:
                    break
                m.app.send_data(sid, rest[:w])
                rest = rest[w:]
            m.pending = [sid, rest]
            if not rest:
                m.app.end_stream(sid)
                m.pending = None

    m.on_app = app
    sid = m.request([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/big"), (b":authority", b"svc:80")])
    m.pump()
    assert body_of(m.got(sid, h2.events.DataReceived)) == payload
    assert m.got(sid, h2.events.StreamEnded)


async def test_slow_client_bounds_what_the_proxy_buffers() -> None:
    m = Mesh()
    m.client_acks = False
    sent = [-1]

    def app(ev) -> None:
        if isinstance(ev, h2.events.StreamEnded):
            m.app.send_headers(ev.stream_id, [(b":status", b"200")])
            sent[0] = 0
        if isinstance(ev, (h2.events.StreamEnded, h2.events.WindowUpdated)) and sent[0] >= 0:
            while sent[0] < 1_000_000:  # as much as the proxy lets it send
                w = min(m.app.local_flow_control_window(1), m.app.max_outbound_frame_size)
                if w <= 0:
                    break
                m.app.send_data(1, b"x" * w)
                sent[0] += w

    m.on_app = app
    sid = m.request([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"svc:80")])
    m.pump()
    got = len(body_of(m.got(sid, h2.events.DataReceived)))
    assert got == 65535  # exactly the client's window
    buffered = sum(len(item[1]) for item in m.srv.streams[sid].resp_q if item[0] == 0)
    assert buffered == sent[0] - got and buffered <= 65535  # the proxy acknowledged only what it passed on


async def test_no_endpoints_gives_grpc_unavailable_trailers_only() -> None:
    m = Mesh(fail=NoEndpoints("service svc:80 has no ready endpoints"))
    sid = m.request(GRPC_REQ, b"\x00\x00\x00\x00\x00")
    m.pump()
    resp = m.got(sid, h2.events.ResponseReceived)
    h = dict(resp[0].headers)
    assert h[b":status"] == b"200" and h[b"grpc-status"] == b"14"
    assert b"no ready endpoints" in h[b"meshlet-proxy-error"]
    assert resp[0].stream_ended is not None  # trailers-only
    assert 'grpc_status_code="14"' in scrape(m.metrics)


async def test_no_endpoints_gives_503_for_plain_h2() -> None:
    m = Mesh(fail=NoEndpoints("service svc:80 has no ready endpoints"))
    sid = m.request([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"svc:80")])
    m.pump()
    h = dict(m.got(sid, h2.events.ResponseReceived)[0].headers)
    assert h[b":status"] == b"503" and b"meshlet-proxy-error" in h
    assert b"no ready endpoints" in body_of(m.got(sid, h2.events.DataReceived))


async def test_upstream_reset_before_response_is_a_502_and_after_is_a_reset() -> None:
    m = Mesh()
    m.on_app = lambda ev: isinstance(ev, h2.events.RequestReceived) and m.app.reset_stream(ev.stream_id, 2)
    sid = m.request([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"svc:80")])
    m.pump()
    assert dict(m.got(sid, h2.events.ResponseReceived)[0].headers)[b":status"] == b"502"

    def app(ev) -> None:
        if isinstance(ev, h2.events.RequestReceived):
            m.app.send_headers(ev.stream_id, [(b":status", b"200")])
            m.app.send_data(ev.stream_id, b"part")
            m.app.reset_stream(ev.stream_id, 2)

    m.on_app = app
    sid = m.request([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"svc:80")])
    m.pump()
    assert body_of(m.got(sid, h2.events.DataReceived)) == b"part"
    assert m.got(sid, h2.events.StreamReset)


async def test_client_reset_cancels_the_upstream_stream() -> None:
    m = Mesh()
    sid = m.request([(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"svc:80")],
                    b"partial", end=False)
    m.pump()
    m.client.reset_stream(sid, 8)
    m.pump()
    assert [e for e in m.app_events if isinstance(e, h2.events.StreamReset)]
    assert not m.srv.streams


async def test_malformed_request_is_refused_without_crashing() -> None:
    m = Mesh()
    m.request([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"svc:80")])
    m.pump()
    m.srv.data_received(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")  # DATA on stream 0: a connection error
    m.pump()
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in m.client_events)
    assert m.down.closing


def test_request_head_from_pseudo_headers() -> None:
    head = request_head(GRPC_REQ + [(b"x-user", b"jason")])
    assert head.method == b"POST" and head.target == b"/pkg.Svc/Call" and head.host == b"svc:80"
    assert (b"x-user", b"jason") in head.headers and (b"host", b"svc:80") in head.headers
    back = upstream_headers(head)
    assert back[:4] == [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/pkg.Svc/Call"),
                        (b":authority", b"svc:80")]
    assert (b"te", b"trailers") in back and all(n != b"host" for n, _ in back)
    with pytest.raises(ProtocolError, match=":method"):
        request_head([(b":path", b"/")])
    with pytest.raises(ProtocolError, match=":path"):
        request_head([(b":method", b"GET"), (b":authority", b"a")])


def test_grpc_helpers() -> None:
    assert grpc.classify(200, 0) == "success" and grpc.classify(200, 14) == "failure"
    assert grpc.classify(503, None) == "failure" and grpc.classify(404, None) == "success"
    assert grpc.from_http(503) == grpc.UNAVAILABLE and grpc.from_http(404) == grpc.UNIMPLEMENTED
    assert grpc.from_http(418) == grpc.UNKNOWN
    t = dict(grpc.trailers_only(4, "timeout 100%\n"))
    assert t[b"grpc-status"] == b"4" and t[b"grpc-message"] == b"timeout 100%25 " and b"meshlet-proxy-error" in t
    assert grpc.status_of([(b"grpc-status", b"x")]) is None
    assert grpc.retry_codes(("unavailable", "5xx", "internal")) == {14, 13}


def test_http1_reply_to_h2() -> None:
    from meshlet.proxy.routes import abort

    status, headers, body = from_http1(abort(418, False))
    assert status == 418 and body == b"fault filter abort\n"
    h = dict(headers)
    assert h[b":status"] == b"418" and h[b"meshlet-proxy-error"] == b"fault injected"
    assert h[b"content-length"] == str(len(body)).encode()


def test_profile_carries_grpc_retry_codes_and_grpc_abort() -> None:
    from meshlet.api import destination_pb as pb
    from meshlet.proxy.profile import compile_profile

    to = [pb.WeightedDst(authority="svc:80", weight=1)]
    prof = compile_profile(pb.DestinationProfile(routes=[
        pb.Route(name="r", retry=pb.RetryPolicy(attempts=2, retry_on=["unavailable", "internal", "5xx"]),
                 backends=to, fault=pb.Fault(abort_grpc_status=7, abort_percent=100.0)),
        pb.Route(name="http", backends=to,
                 fault=pb.Fault(abort_http_status=503, abort_grpc_status=-1, abort_percent=50.0)),
        pb.Route(name="none", backends=to, fault=pb.Fault(abort_grpc_status=-1, abort_percent=100.0))]), {}, "ns")
    r, http, none = prof.routes
    assert r.retry.grpc_codes == {14, 13} and r.retry.on_5xx
    assert r.fault is not None and r.fault.abort_grpc == 7 and r.fault.abort_status == 0
    assert http.fault is not None and http.fault.abort_grpc == -1 and http.fault.abort_status == 503
    assert none.fault is None


async def test_drain_refuses_new_streams_and_closes_after_open_ones() -> None:
    m = Mesh()
    sid = m.request([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"svc:80")])
    m.pump()
    m.srv.drain()
    refused = m.request([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"svc:80")])
    m.pump()
    assert m.got(refused, h2.events.StreamReset)[0].error_code == 7  # REFUSED_STREAM: the client may retry
    assert not m.down.closing  # the open stream still gets its answer
    m.app.send_headers(1, [(b":status", b"204")], end_stream=True)
    m.pump()
    assert dict(m.got(sid, h2.events.ResponseReceived)[0].headers)[b":status"] == b"204"
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in m.client_events)
    assert m.down.closing
