"""HTTP/2 traffic-policy additions in memory (client ⇄ proxy ⇄ app, no sockets): the client's
`grpc-timeout` enforced by the proxy, request trailers passed through."""
from __future__ import annotations

import asyncio
import time

import h2.events
from test_h2_unit import GRPC_REQ, Mesh, scrape

from meshlet.proxy.h2 import grpc


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
    from test_h2_unit import body_of

    assert body_of(m.app_events) == b"\x00\x00\x00\x00\x01x"
    assert m.got(sid, h2.events.StreamEnded)
