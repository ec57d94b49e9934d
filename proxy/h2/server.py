"""The downstream side of HTTP/2: one `H2Server` per accepted h2 connection (h2c with prior
knowledge, or h2 inside TLS), each stream an `H2Exchange`."""
from __future__ import annotations

import asyncio
import random
from typing import Any

import h2.events
import h2.exceptions

from ..errors import ProtocolError, ProxyError
from ..exchange import ConnCtx
from ..metrics import TcpMetrics
from .stream import H2Exchange
from .upstream import H2Pools
from .wire import WINDOW_EVENTS, Connection, H2Wire, config

PROTOCOL_ERROR = 1
REFUSED_STREAM = 7


class H2Server(H2Wire, asyncio.Protocol):
    def __init__(self, router: Any, ctx: ConnCtx, metrics: TcpMetrics | None, pools: H2Pools, conns: set[Any],
                 log: Any, rng: random.Random, mirrors: Any = None) -> None:
        self.router = router
        self.ctx = ctx
        self.metrics = metrics
        self.pools = pools
        self.log = log
        self.rng = rng
        self.mirrors = mirrors
        """`mirror.H2Mirrors` (None: no mirroring)."""
        self.conn = Connection(config(False))
        self.streams: dict[int, H2Exchange] = {}
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.draining = False
        self.write_blocked = False
        self._conns = conns

    def attach(self, transport: asyncio.Transport, initial: bytes) -> None:
        """Take over a sniffed connection (reading is paused; `initial` starts with the preface)."""
        self.transport = transport
        self._conns.add(self)
        transport.set_protocol(self)
        self._start()
        if initial:
            self.data_received(initial)
        if not self.closed:
            transport.resume_reading()

    # === API for exchanges ===

    def send_headers(self, sid: int, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        try:
            self.conn.send_headers(sid, headers, end_stream=end)
        except h2.exceptions.H2Error as e:
            self.log.info("h2.send_failed", stream=sid, error=str(e))

    def send(self, sid: int, data: bytes) -> None:
        try:
            self.conn.send_data(sid, data)
        except h2.exceptions.H2Error as e:
            self.log.info("h2.send_failed", stream=sid, error=str(e))

    def end(self, sid: int) -> None:
        try:
            self.conn.end_stream(sid)
        except h2.exceptions.H2Error:
            pass

    def _open(self) -> bool:
        return not self.closed

    def _writable(self) -> bool:
        return not self.closed

    def _wake(self, sid: int) -> None:
        ex = self.streams.get(sid)
        if ex is not None:
            ex.down_window()

    def _wake_all(self) -> None:
        for ex in list(self.streams.values()):
            ex.down_window()

    def reset(self, sid: int, code: int) -> None:
        try:
            self.conn.reset_stream(sid, code)
        except h2.exceptions.H2Error:
            pass
        self.flush()

    def forget(self, sid: int) -> None:
        self.streams.pop(sid, None)
        if self.draining and not self.streams:
            self._close()

    # === asyncio ===

    def data_received(self, data: bytes) -> None:
        if self.metrics is not None:
            self.metrics.read_bytes += len(data)
        if self.closed:
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.H2Error as e:
            self.log.info("h2.protocol_error", direction=self.ctx.direction, error=str(e))
            self.flush()  # the GOAWAY h2 queued
            self._close()
            return
        started: list[H2Exchange] = []
        for ev in events:
            t = type(ev)
            if t is h2.events.DataReceived:
                ex = self.streams.get(ev.stream_id)
                if ex is None:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                else:
                    ex.on_req_data(ev.data, ev.flow_controlled_length)
            elif t is h2.events.RequestReceived:
                self._request(ev, started)
            elif t is h2.events.TrailersReceived:
                ex = self.streams.get(ev.stream_id)
                if ex is not None and not ex.req_ended:
                    ex.on_req_trailers(ev.headers)  # type: ignore[arg-type]
            elif t is h2.events.StreamEnded:
                ex = self.streams.get(ev.stream_id)
                if ex is not None and not ex.req_ended:
                    ex.on_req_end()
            elif t is h2.events.StreamReset:
                ex = self.streams.get(ev.stream_id)
                if ex is not None:
                    ex.cancel()
            elif t in WINDOW_EVENTS:
                self._window_event(ev)
            elif t is h2.events.ConnectionTerminated:
                self.draining = True
        for ex in started:
            if not ex.done:
                try:
                    ex.begin()
                except Exception as e:  # noqa: BLE001 - a bug fails this stream, not the connection
                    self.log.warning("h2.internal_error", error=f"{type(e).__name__}: {e}")
                    ex.local_error(ProxyError(f"internal proxy error: {type(e).__name__}"))
        self.flush()
        if self.draining and not self.streams:
            self._close()

    def _request(self, ev: h2.events.RequestReceived, started: list[H2Exchange]) -> None:
        sid = ev.stream_id
        if self.draining:
            self.reset(sid, REFUSED_STREAM)
            return
        try:
            ex = H2Exchange(self, sid, ev.headers, ev.stream_ended is not None)  # type: ignore[arg-type]
        except ProtocolError as e:
            self.log.info("h2.request_malformed", stream=sid, error=str(e))
            self.reset(sid, PROTOCOL_ERROR)
            return
        self.streams[sid] = ex
        started.append(ex)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._conns.discard(self)
        if self.metrics is not None:
            self.metrics.closed("" if exc is None else type(exc).__name__)
        for ex in list(self.streams.values()):
            ex.cancel()
        self.streams.clear()

    def drain(self) -> None:
        """Graceful shutdown: new streams are refused (REFUSED_STREAM, safe to retry), the open
        ones finish, then GOAWAY and close. (GOAWAY is not sent first: h2-based clients such
        as grpclib close their side on it and could not read the open streams' responses.)"""
        if self.closed or self.draining:
            return
        self.draining = True
        if not self.streams:
            self._close()

    def _close(self) -> None:
        if self.draining and not self.closed:
            try:
                self.conn.close_connection()
            except h2.exceptions.H2Error:
                pass
            self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
