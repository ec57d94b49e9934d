import pytest
from hypothesis import given, settings, strategies as st

from meshlet.proxy.errors import ProtocolError
from meshlet.proxy.http1 import (
    Body, RequestEnd, RequestHead, RequestParser, ResponseData, ResponseEnd, ResponseFramer, ResponseHead, Upgrade,
    Upgraded, encode_chunk,
)


def feed_all(parser: RequestParser, data: bytes, step: int) -> list:
    events = []
    for i in range(0, len(data), step):
        events += parser.feed(data[i:i + step])
    return events


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_pipelined_requests_with_bodies(step: int) -> None:
    data = (b"GET /a HTTP/1.1\r\nHost: web:8080\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello"
            b"PUT /c HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    events = feed_all(RequestParser(), data, step)
    heads = [e for e in events if isinstance(e, RequestHead)]
    assert [h.target for h in heads] == [b"/a", b"/b", b"/c"]
    assert heads[0].host == b"web:8080" and heads[0].keep_alive
    assert heads[2].chunked and not heads[1].chunked
    bodies = b"".join(e.data for e in events if isinstance(e, Body))
    assert bodies == b"helloabcde"
    assert sum(isinstance(e, RequestEnd) for e in events) == 3


def test_serialize_keeps_version_and_headers() -> None:
    (head, _) = RequestParser().feed(b"GET /x HTTP/1.0\r\nHost: a\r\nX-Y: z\r\n\r\n")
    assert head.serialize() == b"GET /x HTTP/1.0\r\nHost: a\r\nX-Y: z\r\n\r\n"
    assert not head.keep_alive


def test_connection_close() -> None:
    (head, _) = RequestParser().feed(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert not head.keep_alive


def test_upgrade_hands_over_the_rest() -> None:
    events = RequestParser().feed(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                                  b"\x81\x02hi")
    assert isinstance(events[0], RequestHead) and events[0].upgrade
    assert isinstance(events[-1], Upgrade) and events[-1].rest == b"\x81\x02hi"


@pytest.mark.parametrize("bad", [
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
])
def test_malformed_requests_raise_protocol_error(bad: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed HTTP request"):
        RequestParser().feed(bad)


def test_huge_head_is_refused() -> None:
    with pytest.raises(ProtocolError):
        RequestParser().feed(b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n")


def frame(framer: ResponseFramer, data: bytes, step: int) -> list:
    events = []
    for i in range(0, len(data), step):
        events += framer.feed(data[i:i + step])
    return events


def raw_of(events: list) -> bytes:
    return b"".join(e.raw for e in events if isinstance(e, (ResponseHead, ResponseData)))


@pytest.mark.parametrize("step", [1, 2, 7, 10000])
@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
])
def test_response_framing_forwards_exact_bytes(response: bytes, step: int) -> None:
    f = ResponseFramer()
    f.start(head_request=False)
    events = frame(f, response, step)
    assert isinstance(events[-1], ResponseEnd) and events[-1].leftover == b""
    assert raw_of(events) == response
    assert f.keep_alive and f.done


def test_head_response_has_no_body() -> None:
    f = ResponseFramer()
    f.start(head_request=True)
    events = f.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    assert isinstance(events[-1], ResponseEnd)


def test_close_delimited_ends_at_eof() -> None:
    f = ResponseFramer()
    f.start(head_request=False)
    events = f.feed(b"HTTP/1.0 200 OK\r\n\r\nsome")
    events += f.feed(b" body")
    assert not f.keep_alive and not f.done
    end = f.eof()
    assert isinstance(end[0], ResponseEnd)
    assert raw_of(events).endswith(b"some body")


def test_http10_keep_alive() -> None:
    f = ResponseFramer()
    f.start(head_request=False)
    f.feed(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx")
    assert f.keep_alive and f.done
    f.start(head_request=False)
    f.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx")
    assert not f.keep_alive


def test_switching_protocols() -> None:
    f = ResponseFramer()
    f.start(head_request=False)
    events = f.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x01a")
    assert isinstance(events[0], ResponseHead) and events[0].status == 101
    assert isinstance(events[1], Upgraded)
    assert events[2].raw == b"\x81\x01a"
    assert f.feed(b"more")[0].raw == b"more"


def test_leftover_after_response() -> None:
    f = ResponseFramer()
    f.start(head_request=False)
    events = f.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxjunk")
    assert events[-1].leftover == b"junk"


def test_cut_short_is_an_error() -> None:
    f = ResponseFramer()
    f.start(head_request=False)
    f.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(ProtocolError, match="before the response was complete"):
        f.eof()


@pytest.mark.parametrize("bad", [
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"SSH-2.0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
])
def test_malformed_responses(bad: bytes) -> None:
    f = ResponseFramer()
    f.start(head_request=False)
    with pytest.raises(ProtocolError):
        f.feed(bad)


def test_bytes_without_request_are_an_error() -> None:
    with pytest.raises(ProtocolError):
        ResponseFramer().feed(b"HTTP/1.1 200 OK\r\n\r\n")


@settings(deadline=None)  # a busy machine is no failure
@given(st.lists(st.binary(min_size=1, max_size=50), max_size=8), st.integers(min_value=1, max_value=13))
def test_chunked_roundtrip(chunks: list[bytes], step: int) -> None:
    body = b"".join(encode_chunk(c) for c in chunks) + b"0\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    f = ResponseFramer()
    f.start(head_request=False)
    events = frame(f, response, step)
    assert raw_of(events) == response and isinstance(events[-1], ResponseEnd)


@settings(deadline=None)  # a busy machine is no failure
@given(st.binary(max_size=300))
def test_response_framer_never_crashes_unexpectedly(data: bytes) -> None:
    f = ResponseFramer()
    f.start(head_request=False)
    try:
        f.feed(data)
        f.eof()
    except ProtocolError:
        pass


@settings(deadline=None)  # a busy machine is no failure
@given(st.binary(max_size=300))
def test_request_parser_never_crashes_unexpectedly(data: bytes) -> None:
    try:
        RequestParser().feed(data)
    except ProtocolError:
        pass


@pytest.mark.parametrize("bad,part", [(b"HTTP/1.1 2x0 OK\r\n\r\n", "status line"),
                                      (b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "header block"),
                                      (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "header block")])
def test_malformed_response_heads_name_the_part(bad: bytes, part: str) -> None:
    f = ResponseFramer()
    f.start(head_request=False)
    with pytest.raises(ProtocolError, match=part):
        f.feed(bad)


def test_framer_tells_how_much_of_the_body_is_left() -> None:
    f = ResponseFramer()
    f.start(head_request=False)
    assert f.left == -1  # head not read yet
    f.feed(b"HTTP/1.1 503 Busy\r\nContent-Length: 10\r\n\r\n1234")
    assert f.left == 6
    f.feed(b"567890")
    assert f.left == 0
    f.start(head_request=False)
    f.feed(b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert f.left == -1


RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
]


@settings(deadline=None)  # a busy machine is no failure
@given(st.sampled_from(RESPONSES), st.binary(max_size=10), st.integers(min_value=1, max_value=40))
def test_one_read_or_many_give_the_same_events(response: bytes, extra: bytes, step: int) -> None:
    def run(step: int) -> tuple:
        f = ResponseFramer()
        f.start(head_request=False)
        events = frame(f, response + extra, step)
        ends = [e.leftover for e in events if isinstance(e, ResponseEnd)]
        heads = [(e.status, e.keep_alive, e.informational) for e in events if isinstance(e, ResponseHead)]
        return raw_of(events), heads, ends, f.keep_alive, f.left

    whole = run(len(response + extra))
    assert whole[1]  # at least one head framed
    split = run(step)
    assert split[1] == whole[1] and split[3] == whole[3]
    if whole[2]:  # complete: the bytes after it come back as leftover (in the read that ends it)
        assert split[2] and raw_of_all(split) == raw_of_all(whole)
    else:  # close-delimited: everything is body
        assert split[0] == whole[0] == response + extra


def raw_of_all(r: tuple) -> bytes:
    return r[0] + b"".join(r[2])
