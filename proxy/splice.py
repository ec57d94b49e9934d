"""Opaque TCP: a bidirectional byte pipe between two transports, with flow control."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from .metrics import TcpMetrics


class SpliceEnd(asyncio.Protocol):
    """One side of a pipe: bytes read here are written to the peer's transport."""

    __slots__ = ("transport", "peer", "metrics", "eof", "closed", "_on_close")

    def __init__(self, metrics: TcpMetrics | None) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: SpliceEnd | None = None
        self.metrics = metrics
        self.eof = False
        self.closed = False
        self._on_close: Callable[[], None] | None = None

    def on_close(self, cb: Callable[[], None]) -> None:
        """Call `cb` once when this side's connection is gone."""
        self._on_close = cb

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if self.metrics is not None:
            self.metrics.read_bytes += len(data)
        if peer is not None and peer.transport is not None and not peer.closed:
            peer.transport.write(data)
            if peer.metrics is not None:
                peer.metrics.write_bytes += len(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.closed:
            return False
        if peer.eof:
            peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True
        peer.transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self.metrics is not None:
            self.metrics.closed("" if exc is None else type(exc).__name__)
        if self._on_close is not None:
            cb, self._on_close = self._on_close, None
            cb()
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.closed:
            peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            self.peer.transport.resume_reading()


def join(a: asyncio.Transport, a_metrics: TcpMetrics | None, b: asyncio.Transport,
         b_metrics: TcpMetrics | None, *, to_b: bytes = b"", to_a: bytes = b"") -> tuple[SpliceEnd, SpliceEnd]:
    """Splice two live transports; `to_b`/`to_a` are bytes already read that must be forwarded first.

    The transports' metrics objects must already count as opened (their `closed()` is called here).
    """
    ea, eb = SpliceEnd(a_metrics), SpliceEnd(b_metrics)
    ea.transport, eb.transport = a, b
    ea.peer, eb.peer = eb, ea
    a.set_protocol(ea)
    b.set_protocol(eb)
    if to_b:
        b.write(to_b)
        if b_metrics is not None:
            b_metrics.write_bytes += len(to_b)
    if to_a:
        a.write(to_a)
        if a_metrics is not None:
            a_metrics.write_bytes += len(to_a)
    for t, e in ((a, ea), (b, eb)):
        if t.is_closing():
            e.connection_lost(None)
        else:
            t.resume_reading()
    return ea, eb


class Holding(asyncio.Protocol):
    """An upstream connection's protocol until it is spliced: keeps what the server sends first."""

    __slots__ = ("transport", "buf", "eof", "lost", "metrics")

    def __init__(self, metrics: TcpMetrics | None) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.eof = False
        self.lost = False
        self.metrics = metrics

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.metrics is not None:
            self.metrics.opened()

    def data_received(self, data: bytes) -> None:
        if self.metrics is not None:
            self.metrics.read_bytes += len(data)
        self.buf += data
        if len(self.buf) > 64 * 1024 and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.metrics is not None:
            self.metrics.closed("" if exc is None else type(exc).__name__)
