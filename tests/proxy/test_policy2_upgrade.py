"""h2UpgradePolicy pieces without sockets: HTTP/2 response heads as HTTP/1.1, the mark of an
upgraded stream, and an HTTP/1.1 request written to the virtual transport becoming one h2
stream (body within the window, response back as HTTP/1.1 bytes)."""
from __future__ import annotations

import asyncio

from meshlet.proxy.h2.upgrade import ORIG_PROTO, H1OverH2, h1_response_head, is_upgraded


def test_response_heads() -> None:
    raw, chunked = h1_response_head([(b":status", b"200"), (b"content-type", b"text/plain")], False)
    assert raw == b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n" and chunked
    raw, chunked = h1_response_head([(b":status", b"404"), (b"content-length", b"3")], False)
    assert raw == b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\n" and not chunked
    raw, chunked = h1_response_head([(b":status", b"503")], True)
    assert raw.endswith(b"content-length: 0\r\n\r\n") and not chunked
    raw, _ = h1_response_head([(b":status", b"204")], True)
    assert raw == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_upgraded_mark() -> None:
    assert is_upgraded([(b":method", b"GET"), (ORIG_PROTO, b"HTTP/1.1")])
    assert not is_upgraded([(b":method", b"GET")])


class FakeUp:
    def __init__(self, window: int) -> None:
        self.streams: dict[int, object] = {}
        self.opened: list = []
        self.sent: list[bytes] = []
        self.ended = False
        self.acked = 0
        self.win = window

    def open(self, headers, end, sink, max_uses=0):
        self.opened.append((headers, end))
        self.streams[1] = sink
        return 1

    def window(self, sid: int) -> int:
        return self.win

    def send(self, sid: int, data: bytes) -> None:
        self.sent.append(data)
        self.win -= len(data)

    def end(self, sid: int) -> None:
        self.ended = True

    def ack(self, sid: int, n: int) -> None:
        self.acked += n

    def flush(self) -> None:
        pass

    def reset(self, sid: int, code: int = 8) -> None:
        self.streams.pop(sid, None)


class FakePool:
    def __init__(self, up: FakeUp) -> None:
        self.up = up

    def take(self, max_uses: int = 0) -> FakeUp:
        return self.up


class Proto(asyncio.Protocol):
    def __init__(self) -> None:
        self.got = b""
        self.lost: list = []

    def data_received(self, data: bytes) -> None:
        self.got += data

    def connection_lost(self, exc) -> None:
        self.lost.append(exc)


async def test_request_becomes_a_stream_and_the_response_http1() -> None:
    up, proto = FakeUp(window=5), Proto()
    vt = H1OverH2(FakePool(up), proto)
    vt.write(b"POST /p?q=1 HTTP/1.1\r\nHost: svc:80\r\nContent-Length: 8\r\nX-A: 1\r\n\r\n12345678")
    headers, end = up.opened[0]
    h = dict(headers)
    assert not end and h[b":method"] == b"POST" and h[b":path"] == b"/p?q=1" and h[b":authority"] == b"svc:80"
    assert h[ORIG_PROTO] == b"HTTP/1.1" and h[b"x-a"] == b"1"
    assert b"".join(up.sent) == b"12345" and not up.ended  # only the window's worth
    up.win = 100
    vt.up_window()
    assert b"".join(up.sent) == b"12345678" and up.ended
    vt.up_head([(b":status", b"200")], False)
    vt.up_data(b"hello", 5)
    vt.up_end()
    assert proto.got == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert up.acked == 5
    # the next request on the same virtual connection is another stream
    vt.write(b"GET /2 HTTP/1.1\r\nHost: svc:80\r\n\r\n")
    assert len(up.opened) == 2 and up.opened[1][1] is True  # no body: ended with the headers
    vt.up_reset(2, False)
    await asyncio.sleep(0)
    assert vt.is_closing() and len(proto.lost) == 1


async def test_a_request_written_before_the_response_ended_waits_for_it() -> None:
    up, proto = FakeUp(window=1000), Proto()
    vt = H1OverH2(FakePool(up), proto)
    vt.write(b"GET /1 HTTP/1.1\r\nHost: svc:80\r\n\r\nGET /2 HTTP/1.1\r\nHost: svc:80\r\n\r\n")
    assert [dict(h)[b":path"] for h, _ in up.opened] == [b"/1"]  # one exchange at a time
    vt.up_head([(b":status", b"200"), (b"content-length", b"2")], False)
    vt.up_data(b"ok", 2)
    vt.write(b"GET /3 HTTP/1.1\r\nHost: svc:80\r\n\r\n")  # written as the body ends
    assert len(up.opened) == 1
    vt.up_end()
    assert [dict(h)[b":path"] for h, _ in up.opened] == [b"/1", b"/2"]
    vt.up_head([(b":status", b"204")], True)
    assert [dict(h)[b":path"] for h, _ in up.opened] == [b"/1", b"/2", b"/3"]
    assert proto.got == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n"
