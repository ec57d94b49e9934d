"""HTTP/1.x framing, pure: feed bytes, get events. No sockets here.

* `RequestParser` wraps httptools (llhttp) for requests coming from clients.
  Events: `RequestHead`, `Body`, `RequestEnd`, `Upgrade` (bytes after an
  Upgrade/CONNECT request's head belong to the next protocol).
* `ResponseFramer` finds the boundaries of responses coming from servers and
  hands the *raw* bytes back for forwarding (no re-encoding): Content-Length,
  chunked, close-delimited, HEAD, 1xx, 101, 204/304.

Malformed input raises `ProtocolError` naming what is wrong.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import httptools

from .errors import ProtocolError

MAX_HEAD = 64 * 1024


# === request side ===

@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    """The client's connection stays open after the response."""
    upgrade: bool
    chunked: bool
    host: bytes
    upstream_keep_alive: bool = True
    """The upstream connection may be reused: a client's `Connection: close` is hop-by-hop and is
    not forwarded (HTTP/1.1), so the proxy's own connections stay pooled."""

    def serialize(self) -> bytes:
        """The head as it goes upstream (same version and headers as received)."""
        parts = [self.method, b" ", self.target, b" HTTP/", self.version.encode(), b"\r\n"]
        for name, value in self.headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)


@dataclass(slots=True)
class Body:
    data: bytes


@dataclass(slots=True)
class RequestEnd:
    pass


@dataclass(slots=True)
class Upgrade:
    rest: bytes
    """Bytes after the upgrade request (already the new protocol)."""


REQUEST_END = RequestEnd()
RequestEvent = RequestHead | Body | RequestEnd | Upgrade


class RequestParser:
    """Parses a client's byte stream into request events (pipelining included)."""

    __slots__ = ("_p", "_events", "_url", "_headers", "_head_size")

    def __init__(self) -> None:
        self._p = httptools.HttpRequestParser(self)
        self._events: list[RequestEvent] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0

    def feed(self, data: bytes) -> list[RequestEvent]:
        events = self._events = []
        try:
            self._p.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            offset = e.args[0] if e.args and isinstance(e.args[0], int) else len(data)
            events.append(Upgrade(data[offset:]))
        except httptools.HttpParserError as e:
            err = ProtocolError(f"malformed HTTP request: {e}")
            err.events = events  # type: ignore[attr-defined]  # the requests parsed before the bad bytes
            raise err from None
        return events

    # httptools callbacks (no on_message_begin: one call less per request; the head's state is
    # reset when it is complete)
    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > MAX_HEAD:
            raise ProtocolError("request head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._head_size += len(name) + len(value)
        if self._head_size > MAX_HEAD:
            raise ProtocolError("request head too large")

    def on_headers_complete(self) -> None:
        p = self._p
        host = b""
        chunked = False
        close_at = -1
        headers = self._headers
        for i, (name, value) in enumerate(headers):
            n = len(name)  # only names of the right length are lowered and compared
            if n == 4:
                if name.lower() == b"host":
                    host = value
            elif n == 17:
                if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            elif n == 10 and name.lower() == b"connection" and value.strip().lower() == b"close":
                close_at = i
        version = p.get_http_version()
        upstream_keep_alive = version == "1.1"
        if close_at >= 0 and upstream_keep_alive:
            del headers[close_at]
        self._events.append(RequestHead(p.get_method(), self._url, version, headers, p.should_keep_alive(),
                                        p.should_upgrade(), chunked, host, upstream_keep_alive))
        self._url = b""
        self._headers = []
        self._head_size = 0

    def on_body(self, body: bytes) -> None:
        self._events.append(Body(body))

    def on_message_complete(self) -> None:
        self._events.append(REQUEST_END)


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


# === response side ===

class _S(enum.Enum):
    IDLE = 0
    HEAD = 1
    LENGTH = 2
    CHUNK_SIZE = 3
    CHUNK_DATA = 4
    CHUNK_CRLF = 5
    TRAILERS = 6
    UNTIL_CLOSE = 7
    UPGRADED = 8
    DONE = 9


# the states as plain module constants: a global is cheaper to reach than an enum member
S_IDLE = _S.IDLE
S_HEAD = _S.HEAD
S_LENGTH = _S.LENGTH
S_CHUNK_SIZE = _S.CHUNK_SIZE
S_CHUNK_DATA = _S.CHUNK_DATA
S_CHUNK_CRLF = _S.CHUNK_CRLF
S_TRAILERS = _S.TRAILERS
S_UNTIL_CLOSE = _S.UNTIL_CLOSE
S_UPGRADED = _S.UPGRADED
S_DONE = _S.DONE


@dataclass(slots=True)
class ResponseHead:
    status: int
    keep_alive: bool
    raw: bytes
    informational: bool
    """1xx other than 101: another head follows."""


@dataclass(slots=True)
class ResponseData:
    raw: bytes


@dataclass(slots=True)
class ResponseEnd:
    leftover: bytes
    """Bytes after the end of the response (a well-behaved server sends none)."""


@dataclass(slots=True)
class Upgraded:
    """101 Switching Protocols: every following byte belongs to the new protocol."""


ResponseEvent = ResponseHead | ResponseData | ResponseEnd | Upgraded


class ResponseFramer:
    """Finds where one response ends; call `start()` before each request's response."""

    __slots__ = ("_state", "_buf", "_remaining", "_head_request", "keep_alive", "status")

    def __init__(self) -> None:
        self._state = S_IDLE
        self._buf = b""
        self._remaining = 0
        self._head_request = False
        self.keep_alive = True
        self.status = 0

    @property
    def done(self) -> bool:
        return self._state is S_DONE

    @property
    def idle(self) -> bool:
        return self._state in (S_IDLE, S_DONE)

    @property
    def left(self) -> int:
        """Body bytes of the current response still to come: 0 when it is complete, -1 when
        unknown (chunked, close-delimited, head not read yet)."""
        st = self._state
        if st is S_DONE:
            return 0
        return self._remaining if st is S_LENGTH else -1

    def start(self, *, head_request: bool) -> None:
        self._state = S_HEAD
        self._buf = b""
        self._head_request = head_request
        self.keep_alive = True
        self.status = 0

    def feed(self, data: bytes) -> list[ResponseEvent]:
        st = self._state
        if st is S_UPGRADED or st is S_UNTIL_CLOSE:
            return [ResponseData(data)]
        if st is S_LENGTH:  # fast path: a body chunk
            n = self._remaining
            if len(data) < n:
                self._remaining = n - len(data)
                return [ResponseData(data)]
        events: list[ResponseEvent] = []
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos = 0
        end = len(data)
        if st is S_HEAD:  # fast path: a whole small response in one read
            i = data.find(b"\r\n\r\n")
            if 0 <= i and i + 4 <= MAX_HEAD:
                pos = i + 4
                head = self._on_head(data[:pos])
                st = self._state
                if st is S_LENGTH and end - pos == self._remaining:
                    self._state = S_DONE
                    return [head, ResponseData(data[pos:]), ResponseEnd(b"")]
                if st is S_DONE and pos == end:
                    return [head, ResponseEnd(b"")]
                events.append(head)
                if st is S_UPGRADED:
                    events.append(Upgraded())
                    if pos < end:
                        events.append(ResponseData(data[pos:]))
                    return events
        while pos < end or self._state in (S_DONE,):
            st = self._state
            if st is S_HEAD:
                i = data.find(b"\r\n\r\n", pos)
                if i < 0:
                    if end - pos > MAX_HEAD:
                        raise ProtocolError("response head too large")
                    self._buf = data[pos:]
                    return events
                raw = data[pos:i + 4]
                pos = i + 4
                events.append(self._on_head(raw))
                if self._state is S_UPGRADED:
                    events.append(Upgraded())
                    if pos < end:
                        events.append(ResponseData(data[pos:]))
                    return events
            elif st is S_LENGTH:
                take = min(self._remaining, end - pos)
                events.append(ResponseData(data[pos:pos + take]))
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = S_DONE
            elif st is S_CHUNK_SIZE:
                i = data.find(b"\r\n", pos)
                if i < 0:
                    if end - pos > 4096:
                        raise ProtocolError("chunk size line too long")
                    self._buf = data[pos:]
                    return events
                line = data[pos:i].split(b";", 1)[0].strip()
                try:
                    size = int(line, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {line[:20]!r}") from None
                if size < 0:
                    raise ProtocolError("negative chunk size")
                events.append(ResponseData(data[pos:i + 2]))
                pos = i + 2
                if size == 0:
                    self._state = S_TRAILERS
                else:
                    self._remaining = size
                    self._state = S_CHUNK_DATA
            elif st is S_CHUNK_DATA:
                take = min(self._remaining, end - pos)
                events.append(ResponseData(data[pos:pos + take]))
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = S_CHUNK_CRLF
                    self._remaining = 2
            elif st is S_CHUNK_CRLF:
                take = min(self._remaining, end - pos)
                expect = b"\r\n"[2 - self._remaining:2 - self._remaining + take]
                if data[pos:pos + take] != expect:
                    raise ProtocolError("chunk data not followed by CRLF")
                events.append(ResponseData(data[pos:pos + take]))
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = S_CHUNK_SIZE
            elif st is S_TRAILERS:
                i = data.find(b"\r\n", pos)
                if i < 0:
                    if end - pos > MAX_HEAD:
                        raise ProtocolError("trailers too large")
                    self._buf = data[pos:]
                    return events
                events.append(ResponseData(data[pos:i + 2]))
                empty = i == pos
                pos = i + 2
                if empty:
                    self._state = S_DONE
            elif st is S_DONE:
                events.append(ResponseEnd(data[pos:]))
                return events
            elif st is S_UNTIL_CLOSE:
                events.append(ResponseData(data[pos:]))
                return events
            else:  # IDLE: bytes nobody asked for
                raise ProtocolError("unexpected bytes from server with no request outstanding")
        return events

    def eof(self) -> list[ResponseEvent]:
        """The server closed: ends a close-delimited body, else the response was cut short."""
        if self._state is S_UNTIL_CLOSE:
            self._state = S_DONE
            return [ResponseEnd(b"")]
        if self._state in (S_IDLE, S_DONE, S_UPGRADED):
            return []
        raise ProtocolError("connection closed before the response was complete")

    def _on_head(self, raw: bytes) -> ResponseHead:
        if _HEAD.fullmatch(raw) is None:  # one match for the usual case; the details only for the error
            nl = raw.find(b"\r\n")
            status_line = raw[:nl]
            if not _STATUS_LINE.fullmatch(status_line):
                raise ProtocolError(f"malformed status line {status_line[:60]!r}")
            raise ProtocolError(f"malformed response header block {raw[nl + 2:nl + 62]!r}")
        code = raw[9:12]
        status = _STATUS.get(code) or int(code)
        http10 = raw[5:8] == b"1.0"
        lower = raw.lower()
        length = -1
        if b"\r\ncontent-length:" in lower:
            for v in _header_values(raw, lower, b"\r\ncontent-length:"):
                if not v.isdigit():
                    raise ProtocolError(f"bad content-length {v[:20]!r}")
                if length >= 0 and int(v) != length:
                    raise ProtocolError("conflicting content-length headers")
                length = int(v)
        chunked = False
        if b"\r\ntransfer-encoding:" in lower:
            te = _header_values(raw, lower, b"\r\ntransfer-encoding:")
            chunked = te[-1].lower().endswith(b"chunked")
        if b"\r\nconnection:" in lower:
            conn = b",".join(_header_values(raw, lower, b"\r\nconnection:")).lower()
            keep_alive = (b"keep-alive" in conn) if http10 else (b"close" not in conn)
        else:
            keep_alive = not http10
        self.status = status
        if 100 <= status < 200 and status != 101:
            self._state = S_HEAD  # the final response follows
            return ResponseHead(status, keep_alive, raw, True)
        self.keep_alive = keep_alive
        if status == 101:
            self._state = S_UPGRADED
            self.keep_alive = False
        elif self._head_request or status in (204, 304):
            self._state = S_DONE
        elif chunked:
            self._state = S_CHUNK_SIZE
        elif length >= 0:
            self._remaining = length
            self._state = S_LENGTH if length else S_DONE
        else:
            self._state = S_UNTIL_CLOSE
            self.keep_alive = False
        return ResponseHead(status, self.keep_alive, raw, False)


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] [0-9]{3}(?: [^\r\n]*)?")
_HEADER_BLOCK = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*\r\n)*")
_HEAD = re.compile(_STATUS_LINE.pattern + rb"\r\n" + _HEADER_BLOCK.pattern + rb"\r\n")
"""A whole response head (status line, header lines, the empty line)."""


_STATUS = {str(c).encode(): c for c in range(100, 600)}
"""Status code bytes → int (cheaper than int() of bytes)."""


def _header_values(raw: bytes, lower: bytes, needle: bytes) -> list[bytes]:
    """Values of one header (found case-insensitively in the head, which ends with CRLF CRLF)."""
    out = []
    i = lower.find(needle)
    while i >= 0:
        start = i + len(needle)
        end = raw.find(b"\r\n", start)
        out.append(raw[start:end].strip())
        i = lower.find(needle, end)
    return out
