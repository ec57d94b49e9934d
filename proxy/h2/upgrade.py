"""DestinationRule `h2UpgradePolicy: UPGRADE` between two meshlet proxies.

Outbound: an HTTP/1.1 request to an upgraded cluster's meshed endpoint goes as a stream of the
shared HTTP/2 connection (mTLS, ALPN h2) to the peer proxy, marked `l5d-orig-proto: HTTP/1.1`
(Linkerd's header). The HTTP/1 server keeps its own machinery: `UpgradeConnector` hands its
`client.Upstream` a virtual transport (`H1OverH2`) that turns the request bytes written to it
into the stream and the stream's response back into HTTP/1.1 bytes.

Inbound: a stream carrying the mark is sent to the app as HTTP/1.1 (`H1App`, one connection per
stream) instead of h2c, and the response is relayed back as HTTP/2.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import httptools

from ..errors import ConnectError, ProtocolError
from ..http1 import Body, RequestEnd, RequestHead, RequestParser, encode_chunk
from .heads import HOP_BY_HOP, response_headers, status_of, upstream_headers

ORIG_PROTO = b"l5d-orig-proto"
HTTP11 = b"HTTP/1.1"
_REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently", 302: "Found",
            304: "Not Modified", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def is_upgraded(headers: list[tuple[bytes, bytes]]) -> bool:
    """An inbound stream that was HTTP/1.1 at the client's proxy."""
    return any(n == ORIG_PROTO and v == HTTP11 for n, v in headers)


def h1_response_head(headers: list[tuple[bytes, bytes]], ended: bool) -> tuple[bytes, bool]:
    """An HTTP/2 response header block as an HTTP/1.1 head; True when the body goes chunked."""
    status = status_of(headers)
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}".encode()]
    has_len = False
    for n, v in response_headers(headers):
        if n[:1] == b":":
            continue
        has_len = has_len or n == b"content-length"
        lines.append(n + b": " + v)
    chunked = False
    if not has_len and status not in (204, 304) and status >= 200:
        if ended:
            lines.append(b"content-length: 0")
        else:
            lines.append(b"transfer-encoding: chunked")
            chunked = True
    return b"\r\n".join(lines) + b"\r\n\r\n", chunked


# === outbound: HTTP/1.1 requests as streams ===

class H1OverH2(asyncio.Transport):
    """A virtual HTTP/1.1 connection whose requests are streams of an h2 connection (and a
    `upstream.StreamSink` of those streams)."""

    def __init__(self, pool: Any, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.pool = pool
        self.protocol = protocol
        self.parser = RequestParser()
        self.closing = False
        self.up: Any = None
        self.sid = 0
        self.head: RequestHead | None = None
        self.body: deque[bytes] = deque()
        self.req_end = False
        self.end_sent = False
        self.chunked = False
        self.task: asyncio.Task[None] | None = None
        self.waiting: deque[Any] = deque()
        """Parsed request events not taken yet: a next request waits until this one's response is done."""

    # --- the HTTP/1 side writes the request ---
    def write(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.waiting.extend(self.parser.feed(data))
        except ProtocolError as e:
            self._lose(ConnectError(f"request not forwardable over HTTP/2: {e}"))
            return
        self._take()

    def _take(self) -> None:
        while self.waiting:
            ev = self.waiting[0]
            t = type(ev)
            if t is RequestHead:
                if self.head is not None:
                    break  # the exchange before it is not over
                self.head, self.req_end, self.end_sent = ev, False, False
            elif t is Body:
                if self.head is not None:  # (the rest of a request answered early is dropped)
                    self.body.append(ev.data)
            elif t is RequestEnd:
                self.req_end = self.head is not None
            else:  # an Upgrade (WebSocket...): not over HTTP/2
                self._lose(ConnectError("HTTP/1.1 upgrades are not carried over an h2-upgraded connection"))
                return
            self.waiting.popleft()
        if self.head is not None and not self.sid and self.task is None and not self.closing:
            up = self.pool.take()
            if up is not None:
                self._open(up)
            else:
                self.task = asyncio.get_running_loop().create_task(self._connect())
        self._flush()

    async def _connect(self) -> None:
        try:
            up = await self.pool.acquire()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - ConnectError or worse: this virtual connection fails
            self.task = None
            self._lose(e)
            return
        self.task = None
        if not self.closing:
            self._open(up)
            self._flush()

    def _open(self, up: Any) -> None:
        head = self.head
        assert head is not None
        headers = [(n, v) for n, v in upstream_headers(head) if n != b"content-length" or not head.chunked]
        headers.append((ORIG_PROTO, HTTP11))
        end = self.req_end and not self.body
        try:
            self.sid = up.open(headers, end, self)
        except Exception as e:  # noqa: BLE001 - h2 refused the stream (connection closing)
            self._lose(ConnectError(f"upstream HTTP/2 connection unusable: {e}"))
            return
        self.up, self.end_sent = up, end

    def _flush(self) -> None:
        up, sid = self.up, self.sid
        if up is None or not sid or sid not in up.streams:
            return
        q = self.body
        while q:
            w = up.window(sid)
            if w <= 0:
                break
            data = q[0]
            if len(data) <= w:
                up.send(sid, data)
                q.popleft()
            else:
                up.send(sid, data[:w])
                q[0] = data[w:]
        if not q and self.req_end and not self.end_sent:
            up.end(sid)
            self.end_sent = True
        up.flush()

    # --- StreamSink: the response comes back ---
    def up_head(self, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        raw, self.chunked = h1_response_head(headers, ended)
        self._deliver(raw)
        if ended:
            self._done()

    def up_data(self, data: bytes, flow: int) -> None:
        if self.up is not None:
            self.up.ack(self.sid, flow)
        if data:
            self._deliver(encode_chunk(data) if self.chunked else data)

    def up_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.up_end()

    def up_end(self) -> None:
        if self.chunked:
            self._deliver(b"0\r\n\r\n")
        self._done()

    def up_reset(self, code: int, refused: bool) -> None:
        self.up, self.sid = None, 0
        self._lose(ConnectError(f"upstream reset the stream (HTTP/2 error {code})"))

    def up_window(self) -> None:
        self._flush()

    def _done(self) -> None:
        if self.up is not None:
            self.up.flush()
        self.up, self.sid, self.head = None, 0, None
        self.body.clear()
        if self.waiting:
            self._take()  # the next request written meanwhile

    def _deliver(self, data: bytes) -> None:
        if not self.closing:
            self.protocol.data_received(data)

    # --- asyncio.Transport ---
    def _lose(self, exc: Exception | None) -> None:
        if self.closing:
            return
        self.closing = True
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.up is not None and self.sid:
            self.up.reset(self.sid)
        self.up, self.sid = None, 0
        asyncio.get_running_loop().call_soon(self.protocol.connection_lost, exc)

    def close(self) -> None:
        self._lose(None)

    def abort(self) -> None:
        self._lose(None)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass  # bounded by the stream's window: the h2 side acknowledges what was delivered

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class UpgradeConnector:
    """A `client.Connector` stand-in for upgraded clusters: a 'connection' to an endpoint is an
    `H1OverH2` on the shared h2 connection of `H2Pools` (virtual: not counted as TCP)."""

    def __init__(self, h2pools: Any) -> None:
        self.h2pools = h2pools

    async def connect(self, ip: str, port: int, identity: str, server_name: str, protocol: Any, *,
                      timeout: float = 0.0, origination: Any = None) -> H1OverH2:
        pool = self.h2pools.endpoint(ip, port, identity, server_name, protocol.metrics)
        await pool.acquire(timeout)  # the h2 connection is up (ConnectError otherwise)
        vt = H1OverH2(pool, protocol)
        protocol.metrics = None  # the h2 connection is the TCP connection (counted by its pool)
        protocol.connection_made(vt)
        return vt


# === inbound: an upgraded stream to the app as HTTP/1.1 ===

class _AppProtocol(asyncio.Protocol):
    def __init__(self, owner: H1App) -> None:
        self.owner = owner
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.owner.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.owner.failed(f"app response malformed: {e}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.failed("app closed the connection" + (f": {exc}" if exc else ""))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        out = [(b":status", str(status).encode())]
        out += [(n, v) for n, v in self.headers if n not in HOP_BY_HOP]
        self.owner.head(out)
        if self.owner.head_only:  # no body follows a HEAD response
            self.owner.end_of_response()

    def on_body(self, body: bytes) -> None:
        self.owner.data(body)

    def on_message_complete(self) -> None:
        self.owner.end_of_response()


class H1App:
    """One upgraded stream to the app over its own HTTP/1.1 connection, with the stream API of
    an `H2Upstream` (one stream, id 1)."""

    SID = 1

    def __init__(self, ip: str, port: int) -> None:
        self.ip, self.port = ip, port
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Any] = {}
        self.chunked = False
        self.finished = False
        self.head_only = False

    async def connect(self, timeout: float) -> H1App:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: _AppProtocol(self), self.ip, self.port), timeout)
        except (OSError, TimeoutError) as e:
            raise ConnectError(f"connect to {self.ip}:{self.port} failed: {e}") from None
        return self

    def open(self, headers: list[tuple[bytes, bytes]], end: bool, sink: Any, max_uses: int = 0) -> int:
        pseudo = {n: v for n, v in headers if n[:1] == b":"}
        self.head_only = pseudo.get(b":method") == b"HEAD"
        lines = [pseudo.get(b":method", b"GET") + b" " + pseudo.get(b":path", b"/") + b" HTTP/1.1",
                 b"host: " + pseudo.get(b":authority", b"")]
        has_len = False
        for n, v in headers:
            if n[:1] == b":" or n == ORIG_PROTO or n == b"te":
                continue
            has_len = has_len or n == b"content-length"
            lines.append(n + b": " + v)
        if not end and not has_len:
            lines.append(b"transfer-encoding: chunked")
            self.chunked = True
        self.streams[self.SID] = sink
        self._write(b"\r\n".join(lines) + b"\r\n\r\n")
        return self.SID

    def window(self, sid: int) -> int:
        return 65535 if self.transport is not None and not self.transport.is_closing() else 0

    def send(self, sid: int, data: bytes, end: bool = False) -> None:
        self._write(encode_chunk(data) if self.chunked else data)

    def end(self, sid: int) -> None:
        if self.chunked:
            self._write(b"0\r\n\r\n")

    def trailers(self, sid: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.end(sid)

    def ack(self, sid: int, n: int) -> None:
        pass

    def flush(self) -> None:
        pass

    def reset(self, sid: int, code: int = 8) -> None:
        self.streams.clear()
        self._close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # from the response parser
    def head(self, headers: list[tuple[bytes, bytes]]) -> None:
        sink = self.streams.get(self.SID)
        if sink is not None:
            sink.up_head(headers, False)

    def data(self, body: bytes) -> None:
        sink = self.streams.get(self.SID)
        if sink is not None:
            sink.up_data(body, 0)

    def end_of_response(self) -> None:
        self.finished = True
        sink = self.streams.pop(self.SID, None)
        if sink is not None:
            sink.up_end()
        self._close()

    def failed(self, why: str) -> None:
        if self.finished:
            return
        self.finished = True
        sink = self.streams.pop(self.SID, None)
        self._close()
        if sink is not None:
            sink.up_reset(2, False)


class H1AppPool:
    """The h2-pool stand-in of upgraded inbound streams: a new app connection per stream."""

    def __init__(self, ip: str, port: int, connect_timeout: float) -> None:
        self.ip, self.port, self.connect_timeout = ip, port, connect_timeout

    def take(self, max_uses: int = 0) -> None:
        return None

    async def acquire(self, timeout: float = 0.0, max_uses: int = 0) -> H1App:
        return await H1App(self.ip, self.port).connect(timeout or self.connect_timeout)
