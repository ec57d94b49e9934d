"""The upstream side of HTTP/2: one multiplexed client connection per endpoint (more when the
peer's stream limit is reached), pooled per endpoint, over mTLS with ALPN "h2" or h2c."""
from __future__ import annotations

import asyncio
import ssl
from typing import Any, Protocol

import h2.errors
import h2.events
import h2.exceptions

from ..client import Pool
from ..errors import ConnectError, IdentityError, PeerIdentityError
from ..identity import IdentityManager
from ..metrics import TcpMetrics
from ..tlsctx import peer_uris
from .wire import WINDOW_EVENTS, Connection, H2Wire, config


class StreamSink(Protocol):
    def up_head(self, headers: list[tuple[bytes, bytes]], ended: bool) -> None: ...
    def up_data(self, data: bytes, flow: int) -> None: ...
    def up_trailers(self, headers: list[tuple[bytes, bytes]]) -> None: ...
    def up_end(self) -> None: ...
    def up_reset(self, code: int, refused: bool) -> None:
        """The stream failed: reset by the peer (its error code) or the connection ended.
        `refused`: the peer never processed it (REFUSED_STREAM, GOAWAY past it): safe to retry."""
    def up_window(self) -> None:
        """Send window opened: send more request data."""


class H2Upstream(H2Wire, asyncio.Protocol):
    """A client HTTP/2 connection; streams are opened by sinks and events go to them."""

    def __init__(self, metrics: TcpMetrics | None, pool: H2Pool) -> None:
        self.conn = Connection(config(True))
        self.transport: asyncio.Transport | None = None
        self.metrics = metrics
        self.pool = pool
        self.streams: dict[int, StreamSink] = {}
        self.alive = True
        self.goaway = False
        self.write_blocked = False
        self._idle: asyncio.TimerHandle | None = None
        self.uses = 0
        """Streams opened on this connection."""
        self.spent = False
        """maxRequestsPerConnection reached: no new streams; closed once its streams are done."""

    # === stream API (for sinks) ===

    def has_capacity(self, max_uses: int = 0) -> bool:
        return self.alive and not self.goaway and not self.spent and (not max_uses or self.uses < max_uses) and \
            self.conn.open_outbound_streams < self.conn.remote_settings.max_concurrent_streams

    def open(self, headers: list[tuple[bytes, bytes]], end: bool, sink: StreamSink, max_uses: int = 0) -> int:
        """A new stream; `max_uses` (maxRequestsPerConnection): the connection takes no more
        streams after that many and closes once they are done."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, headers, end_stream=end)
        self.streams[sid] = sink
        self.uses += 1
        if max_uses and self.uses >= max_uses:
            self.spent = True
            self.pool.forget(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.flush()
        return sid

    def _open(self) -> bool:
        return self.alive

    def _writable(self) -> bool:
        return not self.transport.is_closing()

    def _wake(self, sid: int) -> None:
        sink = self.streams.get(sid)
        if sink is not None:
            sink.up_window()

    def _wake_all(self) -> None:
        for sink in list(self.streams.values()):
            sink.up_window()

    def send(self, sid: int, data: bytes, end: bool = False) -> None:
        self.conn.send_data(sid, data, end_stream=end)

    def end(self, sid: int) -> None:
        self.conn.end_stream(sid)

    def trailers(self, sid: int, headers: list[tuple[bytes, bytes]]) -> None:
        """End the request stream with trailers."""
        self.conn.send_headers(sid, headers, end_stream=True)

    def reset(self, sid: int, code: int = 8) -> None:
        """Abandon a stream (default CANCEL); its sink gets nothing more."""
        if self.streams.pop(sid, None) is not None and self.alive:
            try:
                self.conn.reset_stream(sid, code)
            except h2.exceptions.H2Error:
                pass
            self.flush()
        self._maybe_idle()

    # === asyncio ===

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.metrics is not None:
            self.metrics.opened()
        self._start()

    def data_received(self, data: bytes) -> None:
        if self.metrics is not None:
            self.metrics.read_bytes += len(data)
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.H2Error as e:
            self.flush()
            self._fail(f"upstream HTTP/2 protocol error: {e}")
            return
        for ev in events:
            t = type(ev)
            if t is h2.events.DataReceived:
                sink = self.streams.get(ev.stream_id)
                if sink is None:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                else:
                    sink.up_data(ev.data, ev.flow_controlled_length)
            elif t is h2.events.ResponseReceived:
                sink = self.streams.get(ev.stream_id)
                if sink is not None:
                    sink.up_head(ev.headers, ev.stream_ended is not None)
            elif t is h2.events.TrailersReceived:
                sink = self.streams.get(ev.stream_id)
                if sink is not None:
                    sink.up_trailers(ev.headers)
            elif t is h2.events.StreamEnded:
                sink = self.streams.pop(ev.stream_id, None)
                if sink is not None:
                    sink.up_end()
                    self._maybe_idle()
            elif t is h2.events.StreamReset:
                sink = self.streams.pop(ev.stream_id, None)
                if sink is not None:
                    sink.up_reset(ev.error_code, ev.error_code == h2.errors.ErrorCodes.REFUSED_STREAM)
                    self._maybe_idle()
            elif t in WINDOW_EVENTS:
                self._window_event(ev)
            elif t is h2.events.ConnectionTerminated:
                self.goaway = True
                self.pool.forget(self)
                last = ev.last_stream_id if ev.last_stream_id is not None else 0
                for sid in [s for s in self.streams if s > last]:
                    self.streams.pop(sid).up_reset(7, True)  # never processed: REFUSED_STREAM
                self._maybe_idle()
        self.flush()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.metrics is not None and self.transport is not None:
            self.metrics.closed("" if exc is None else type(exc).__name__)
            self.metrics = None
        self._fail("upstream connection lost" + (f": {exc}" if exc else ""))

    def _fail(self, why: str) -> None:
        self.alive = False
        self.pool.forget(self)
        streams, self.streams = self.streams, {}
        for sink in streams.values():
            sink.up_reset(2, False)  # INTERNAL_ERROR
        if self.transport is not None:
            self.transport.close()

    def _maybe_idle(self) -> None:
        if self.streams or self._idle is not None or not self.alive:
            return
        if self.goaway or self.spent:
            self.close()
            return
        self._idle = asyncio.get_running_loop().call_later(self.pool.idle_timeout, self._idle_close)

    def _idle_close(self) -> None:
        self._idle = None
        if not self.streams:
            self.close()

    def close(self) -> None:
        if self.alive:
            self.alive = False
            self.pool.forget(self)
            try:
                self.conn.close_connection()
                self.flush()
            except h2.exceptions.H2Error:
                pass
        if self.transport is not None:
            self.transport.close()


class H2Pool:
    """Multiplexed connections to one endpoint (the h2 counterpart of an HTTP/1 `Pool`)."""

    def __init__(self, ip: str, port: int, identity: str, server_name: str, idm: IdentityManager | None,
                 metrics: TcpMetrics | None, connect_timeout: float, idle_timeout: float) -> None:
        self.ip, self.port, self.identity, self.server_name = ip, port, identity, server_name
        self.idm = idm
        self.metrics = metrics
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.conns: list[H2Upstream] = []
        self._connecting: asyncio.Future[H2Upstream] | None = None

    def take(self, max_uses: int = 0) -> H2Upstream | None:
        for up in self.conns:
            if up.has_capacity(max_uses):
                return up
        return None

    async def acquire(self, timeout: float = 0.0, max_uses: int = 0) -> H2Upstream:
        """A connection with room for one more stream (one connect at a time per endpoint)."""
        while True:
            up = self.take(max_uses)
            if up is not None:
                return up
            if self._connecting is not None:
                fut = self._connecting
                try:
                    await asyncio.shield(fut)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if not fut.cancelled() or (task is not None and task.cancelling()):
                        raise  # we are cancelled ourselves
                continue  # the connecting caller was cancelled: connect ourselves
            fut = self._connecting = asyncio.get_running_loop().create_future()
            try:
                up = await self._connect(timeout or self.connect_timeout)
            except BaseException as e:
                self._connecting = None
                if isinstance(e, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(e)
                    fut.exception()  # marked retrieved: the waiters re-raise it
                raise
            self._connecting = None
            self.conns.append(up)
            fut.set_result(up)
            return up

    async def _connect(self, timeout: float) -> H2Upstream:
        loop = asyncio.get_running_loop()
        up = H2Upstream(self.metrics, self)
        ctx: ssl.SSLContext | None = None
        if self.identity:
            mat = self.idm.current if self.idm is not None else None
            if mat is None:
                raise IdentityError("no certificate yet: cannot open mTLS connections")
            ctx = mat.h2_client_ctx or mat.client_ctx
        try:
            if ctx is None:
                coro = loop.create_connection(lambda: up, self.ip, self.port)
            else:
                coro = loop.create_connection(lambda: up, self.ip, self.port, ssl=ctx,
                                              server_hostname=self.server_name or "", ssl_handshake_timeout=timeout)
            transport, _ = await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            raise ConnectError(f"connect to {self.ip}:{self.port} timed out") from None
        except ssl.SSLError as e:
            raise ConnectError(f"TLS handshake with {self.ip}:{self.port} failed: {e.reason or e}") from None
        except OSError as e:
            raise ConnectError(f"connect to {self.ip}:{self.port} failed: {e.strerror or e}") from None
        if ctx is not None:
            uris = peer_uris(transport.get_extra_info("peercert"))
            if uris != [self.identity]:
                transport.abort()
                raise PeerIdentityError(f"{self.ip}:{self.port} presented {uris or 'no URI SAN'}, "
                                        f"expected {self.identity}")
        return up

    def forget(self, up: H2Upstream) -> None:
        try:
            self.conns.remove(up)
        except ValueError:
            pass

    def close(self) -> None:
        for up in list(self.conns):
            up.close()
        self.conns.clear()


class H2Pools:
    """One `H2Pool` per HTTP/1 `Pool` the routers chose (same endpoint, identity and labels)."""

    def __init__(self, idm: IdentityManager | None, connect_timeout: float, idle_timeout: float) -> None:
        self.idm = idm
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._pools: dict[tuple[Any, ...], H2Pool] = {}

    def get(self, pool: Pool) -> H2Pool:
        if pool.origination is not None:
            raise ConnectError("TLS origination (DestinationRule SIMPLE/MUTUAL) is not supported for HTTP/2")
        return self.endpoint(pool.ip, pool.port, pool.identity, pool.server_name, pool.metrics)

    def endpoint(self, ip: str, port: int, identity: str, server_name: str, metrics: TcpMetrics | None) -> H2Pool:
        """The pool of one endpoint (the first caller's metrics count its connections)."""
        key = (ip, port, identity, server_name)
        p = self._pools.get(key)
        if p is None:
            if len(self._pools) > 4096:
                self.close()
            p = self._pools[key] = H2Pool(ip, port, identity, server_name, self.idm, metrics, self.connect_timeout,
                                          self.idle_timeout)
        elif p.metrics is None and metrics is not None:
            p.metrics = metrics
        return p

    def close(self) -> None:
        for p in self._pools.values():
            p.close()
        self._pools.clear()
