"""Sniff (first-bytes detection with a timeout) and splice (byte pipe) with in-memory transports."""
from __future__ import annotations

import asyncio

from meshlet.proxy import splice
from meshlet.proxy.detect import Detected
from meshlet.proxy.metrics import TcpMetrics
from meshlet.proxy.sniff import Sniff
from test_server_unit import FakeTransport


class HalfCloseTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.eof_written = False

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True


def sniffer(timeout: float) -> tuple[Sniff, FakeTransport, list[Detected]]:
    verdicts: list[Detected] = []
    s = Sniff(timeout, TcpMetrics(("x",)))
    t = FakeTransport()
    s.connection_made(t)  # type: ignore[arg-type]
    s.set_handler(lambda _, v: verdicts.append(v))
    return s, t, verdicts


async def test_http_is_detected_from_split_bytes() -> None:
    s, _, verdicts = sniffer(5.0)
    s.data_received(b"GET /x HT")
    assert verdicts == []
    s.data_received(b"TP/1.1\r\nHost: a\r\n\r\n")
    assert verdicts == [Detected.HTTP1]
    assert s.take() == b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
    assert s.metrics.read_bytes == 28 and s.metrics.open_conns == 1


async def test_silence_means_opaque() -> None:
    s, _, verdicts = sniffer(0.05)
    for _ in range(200):
        if verdicts:
            break
        await asyncio.sleep(0.01)
    assert verdicts == [Detected.OPAQUE]


async def test_verdict_before_handler_is_delivered_later() -> None:
    s = Sniff(5.0, None)
    s.connection_made(FakeTransport())  # type: ignore[arg-type]
    s.data_received(b"\x16\x03\x01")
    got: list[Detected] = []
    s.set_handler(lambda _, v: got.append(v))
    assert got == [Detected.OPAQUE]


async def test_eof_after_partial_bytes_is_opaque_and_lost_connection_is_counted() -> None:
    s, _, verdicts = sniffer(5.0)
    s.data_received(b"GE")
    assert s.eof_received() is True
    assert verdicts == [Detected.OPAQUE]
    s.connection_lost(None)
    assert s.metrics.open_conns == 0 and s.metrics.closes == {"": 1}


async def test_splice_forwards_both_ways_and_half_closes() -> None:
    a, b = HalfCloseTransport(), HalfCloseTransport()
    ma, mb = TcpMetrics(("a",)), TcpMetrics(("b",))
    ma.opened()
    mb.opened()
    ea, eb = splice.join(a, ma, b, mb, to_b=b"early", to_a=b"banner")  # type: ignore[arg-type]
    assert b.data() == b"early" and a.data() == b"banner"
    ea.data_received(b"ping")
    eb.data_received(b"pong")
    assert b.data() == b"earlyping" and a.data() == b"bannerpong"
    assert ea.eof_received() is True and b.eof_written  # half-close travels
    assert not a.closed
    eb.eof_received()  # both directions done
    assert a.closed
    ea.connection_lost(None)
    eb.connection_lost(None)
    assert ma.open_conns == 0 and mb.open_conns == 0
    assert ma.read_bytes == 4 and mb.write_bytes == len(b"earlyping")


async def test_splice_backpressure() -> None:
    a, b = FakeTransport(), FakeTransport()
    ea, eb = splice.join(a, None, b, None)  # type: ignore[arg-type]
    eb.pause_writing()  # b's buffer is full: stop reading a
    assert not a.reading
    eb.resume_writing()
    assert a.reading
    eb.connection_lost(ConnectionResetError())
    assert a.closed
