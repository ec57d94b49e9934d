"""The first protocol of every accepted connection: buffer bytes until the protocol is known."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from .detect import Detected, detect
from .metrics import TcpMetrics


class Sniff(asyncio.Protocol):
    """Buffers the client's first bytes; calls `on_detected` once with the verdict.

    No bytes within `timeout` → OPAQUE (server-speaks-first protocols). After
    the verdict it keeps buffering (bounded: reading pauses) until the owner
    takes the transport over with `take()`.
    """

    __slots__ = ("transport", "buf", "decided", "lost", "eof", "metrics", "verdict", "_timer", "_on_detected",
                 "_timeout")

    def __init__(self, timeout: float, metrics: TcpMetrics | None) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.decided = False
        self.lost = False
        self.eof = False
        self.metrics = metrics
        self.verdict: Detected | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._on_detected: Callable[["Sniff", Detected], None] | None = None
        self._timeout = timeout

    def set_handler(self, on_detected: Callable[["Sniff", Detected], None]) -> None:
        """Where the verdict goes (called at once when it is already known)."""
        self._on_detected = on_detected
        if self.verdict is not None and not self.lost:
            on_detected(self, self.verdict)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.metrics is not None:
            self.metrics.opened()
        if self._timeout <= 0:
            self._decide(Detected.OPAQUE)
        else:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expired)

    def data_received(self, data: bytes) -> None:
        if self.metrics is not None:
            self.metrics.read_bytes += len(data)
        self.buf += data
        if not self.decided:
            verdict = detect(self.buf)
            if verdict is not Detected.NEED_MORE:
                self._decide(verdict)
                return
        if len(self.buf) > 64 * 1024 and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        if not self.decided:
            if self.buf:
                self._decide(Detected.OPAQUE)
            else:
                return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.metrics is not None:
            self.metrics.closed("" if exc is None else type(exc).__name__)
        if self._timer is not None:
            self._timer.cancel()

    def _expired(self) -> None:
        if not self.decided and not self.lost:
            self._decide(Detected.OPAQUE)

    def _decide(self, verdict: Detected) -> None:
        self.decided = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.verdict = verdict
        if self._on_detected is not None:
            self._on_detected(self, verdict)

    def take(self) -> bytes:
        """Hand the connection over: returns the buffered bytes; the caller sets a new protocol."""
        buf, self.buf = self.buf, b""
        if self.transport is not None:
            self.transport.pause_reading()
        return buf
