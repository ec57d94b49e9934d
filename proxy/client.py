"""The upstream side of HTTP/1: a connection protocol, per-endpoint pools and the connector.

`Upstream` frames responses with `ResponseFramer` and hands events to its
current sink (the downstream connection that owns the exchange). `Pool`
keeps idle keep-alive connections per endpoint; `Connector` opens plain or
mTLS connections and checks the peer's SPIFFE id after the handshake.
"""
from __future__ import annotations

import asyncio
import ssl
import time
from typing import Protocol

from .errors import ConnectError, IdentityError, PeerIdentityError, ProtocolError
from .http1 import ResponseData, ResponseEnd, ResponseFramer, ResponseHead, Upgraded
from .identity import IdentityManager
from .metrics import ProxyMetrics, TcpMetrics
from .tlsctx import peer_uris


MAX_DRAIN = 64 * 1024
"""Body bytes a dropped response may still have for its connection to be drained and kept."""
DRAIN_TIMEOUT = 10.0


class Sink(Protocol):
    def up_head(self, up: "Upstream", head: ResponseHead) -> bytes:
        """Metrics; returns the head's bytes to forward."""
    def up_data(self, up: "Upstream", raw: bytes) -> None: ...
    def up_end(self, up: "Upstream", leftover: bytes) -> None: ...
    def up_upgraded(self, up: "Upstream") -> None: ...
    def up_error(self, up: "Upstream", err: Exception) -> None: ...
    def up_pause(self, paused: bool) -> None: ...


class Upstream(asyncio.Protocol):
    __slots__ = ("transport", "framer", "sink", "alive", "reused", "got_bytes", "idle_since", "metrics", "pool",
                 "reading", "write_blocked", "uses")

    def __init__(self, metrics: TcpMetrics | None, pool: "Pool | None" = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.framer = ResponseFramer()
        self.sink: Sink | None = None
        self.alive = True
        self.reused = False
        self.got_bytes = False
        self.idle_since = 0.0
        self.metrics = metrics
        self.pool = pool
        self.reading = True
        self.write_blocked = False
        self.uses = 0
        """Requests sent on this connection (maxRequestsPerConnection)."""

    def set_reading(self, on: bool) -> None:
        if on != self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = on
            if on:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.metrics is not None:
            self.metrics.opened()

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]
        if self.metrics is not None:
            self.metrics.write_bytes += len(data)

    def data_received(self, data: bytes) -> None:
        if self.metrics is not None:
            self.metrics.read_bytes += len(data)
        sink = self.sink
        if sink is None:  # bytes while idle: not reusable
            self.close()
            return
        self.got_bytes = True
        try:
            events = self.framer.feed(data)
        except ProtocolError as e:
            self.alive = False
            sink.up_error(self, e)
            return
        # forward the raw bytes of one read in one write (one syscall, one TLS record)
        parts: list[bytes] = []
        upgraded = False
        for ev in events:
            t = type(ev)
            if t is ResponseData:
                parts.append(ev.raw)  # type: ignore[union-attr]
            elif t is ResponseHead:
                raw = sink.up_head(self, ev)  # type: ignore[arg-type]
                if self.sink is not sink:  # the response is dropped (a retry)
                    sink = self.sink
                    if sink is None:  # with its connection
                        return
                    parts = []  # read to its end (`drain`), then the connection is pooled again
                    continue
                parts.append(raw)
            elif t is ResponseEnd:
                if parts:
                    sink.up_data(self, parts[0] if len(parts) == 1 else b"".join(parts))
                    parts = []
                sink.up_end(self, ev.leftover)  # type: ignore[union-attr]
                if self.sink is not sink:
                    return
            elif t is Upgraded:
                upgraded = True  # the bytes after the 101 head follow as ResponseData
        if parts:
            sink.up_data(self, parts[0] if len(parts) == 1 else b"".join(parts))
        if upgraded:
            sink.up_upgraded(self)

    def eof_received(self) -> bool:
        self._ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.metrics is not None and self.transport is not None:
            self.metrics.closed("" if exc is None else type(exc).__name__)
            self.metrics = None
        self._ended(exc)
        if self.pool is not None:
            self.pool.forget(self)

    def _ended(self, exc: Exception | None) -> None:
        self.alive = False
        sink = self.sink
        if sink is None:
            return
        try:
            events = self.framer.eof()
        except ProtocolError as e:
            self.sink = None
            sink.up_error(self, e if exc is None else ConnectError(f"upstream connection lost: {exc}"))
            return
        for ev in events:
            if type(ev) is ResponseEnd:
                sink.up_end(self, b"")

    def pause_writing(self) -> None:
        self.write_blocked = True
        if self.sink is not None:
            self.sink.up_pause(True)

    def resume_writing(self) -> None:
        self.write_blocked = False
        if self.sink is not None:
            self.sink.up_pause(False)

    def close(self) -> None:
        self.alive = False
        self.sink = None
        if self.transport is not None:
            self.transport.close()

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """The current response is not wanted (a retried failure): read the rest of it (at most
        `MAX_DRAIN` bytes, within `timeout`), then go back to the pool if still reusable, so the
        retry need not reconnect. False (nothing done) when it is not worth it: close instead."""
        left = self.framer.left
        if not self.framer.keep_alive or self.pool is None or left < 0 or left > MAX_DRAIN:
            return False
        self.sink = _Drain(self, timeout)
        self.set_reading(True)
        return True


class _Drain:
    """Sink of a response nobody wants: discards it; pools the connection at its end, closes
    it if the end does not come in time."""

    __slots__ = ("timer",)

    def __init__(self, up: Upstream, timeout: float) -> None:
        self.timer = asyncio.get_running_loop().call_later(timeout, self._expired, up)

    def _expired(self, up: Upstream) -> None:
        if up.sink is self:
            up.close()

    def up_head(self, up: Upstream, head: ResponseHead) -> bytes:
        return b""

    def up_data(self, up: Upstream, raw: bytes) -> None:
        pass

    def up_end(self, up: Upstream, leftover: bytes) -> None:
        self.timer.cancel()
        if leftover or not up.framer.keep_alive or up.pool is None:
            up.close()
        else:
            up.pool.release(up)

    def up_upgraded(self, up: Upstream) -> None:
        self.timer.cancel()
        up.close()

    def up_error(self, up: Upstream, err: Exception) -> None:
        self.timer.cancel()
        up.close()

    def up_pause(self, paused: bool) -> None:
        pass


class Connector:
    """Opens connections to endpoints: mTLS when the endpoint has an identity, else plain."""

    def __init__(self, idm: IdentityManager | None, timeout: float) -> None:
        self.idm = idm
        self.timeout = timeout

    async def connect(self, ip: str, port: int, identity: str, server_name: str,
                      protocol: asyncio.Protocol, *, timeout: float = 0.0,
                      origination: ssl.SSLContext | None = None) -> asyncio.Transport:
        """Connect `protocol` (an instance: uvloop hands back its own SSLProtocol for TLS).
        `origination`: TLS to a server outside the mesh (DestinationRule SIMPLE/MUTUAL), with
        `server_name` as SNI and no SPIFFE check."""
        loop = asyncio.get_running_loop()
        ctx: ssl.SSLContext | None = origination
        timeout = timeout or self.timeout
        if identity and origination is None:
            mat = self.idm.current if self.idm is not None else None
            if mat is None:
                raise IdentityError("no certificate yet: cannot open mTLS connections")
            ctx = mat.client_ctx
        try:
            if ctx is None:
                coro = loop.create_connection(lambda: protocol, ip, port)
            else:
                coro = loop.create_connection(lambda: protocol, ip, port, ssl=ctx, server_hostname=server_name or "",
                                              ssl_handshake_timeout=timeout)
            transport, _ = await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            raise ConnectError(f"connect to {ip}:{port} timed out") from None
        except ssl.SSLError as e:
            raise ConnectError(f"TLS handshake with {ip}:{port} failed: {e.reason or e}") from None
        except OSError as e:
            raise ConnectError(f"connect to {ip}:{port} failed: {e.strerror or e}") from None
        if ctx is not None and origination is None:
            uris = peer_uris(transport.get_extra_info("peercert"))
            if uris != [identity]:
                transport.abort()
                raise PeerIdentityError(f"{ip}:{port} presented {uris or 'no URI SAN'}, expected {identity}")
        return transport  # type: ignore[return-value]


class Pool:
    """Idle keep-alive connections to one endpoint."""

    __slots__ = ("ip", "port", "identity", "server_name", "connector", "metrics", "idle", "max_idle",
                 "idle_timeout", "origination")

    def __init__(self, ip: str, port: int, identity: str, server_name: str, connector: Connector,
                 metrics: TcpMetrics | None, *, max_idle: int = 64, idle_timeout: float = 60.0,
                 origination: ssl.SSLContext | None = None) -> None:
        self.ip, self.port, self.identity, self.server_name = ip, port, identity, server_name
        self.connector = connector
        self.metrics = metrics
        self.idle: list[Upstream] = []
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.origination = origination

    def take_idle(self) -> Upstream | None:
        idle = self.idle
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            up = idle.pop()
            if up.alive and now - up.idle_since < self.idle_timeout and up.transport is not None \
                    and not up.transport.is_closing():
                up.reused = True
                return up
            up.close()
        return None

    async def connect(self, timeout: float = 0.0) -> Upstream:
        up = Upstream(self.metrics, self)
        await self.connector.connect(self.ip, self.port, self.identity, self.server_name, up, timeout=timeout,
                                     origination=self.origination)
        return up

    def release(self, up: Upstream) -> None:
        up.sink = None
        up.got_bytes = False
        up.set_reading(True)
        if up.alive and up.framer.idle and len(self.idle) < self.max_idle and up.transport is not None \
                and not up.transport.is_closing():
            up.idle_since = time.monotonic()
            self.idle.append(up)
        else:
            up.close()

    def forget(self, up: Upstream) -> None:
        try:
            self.idle.remove(up)
        except ValueError:
            pass

    def close(self) -> None:
        for up in self.idle:
            up.close()
        self.idle.clear()


class Pools:
    """One `Pool` per (ip, port, identity, server_name)."""

    def __init__(self, connector: Connector, metrics: ProxyMetrics, *, max_idle: int, idle_timeout: float) -> None:
        self.connector = connector
        self._metrics = metrics
        self._pools: dict[tuple[str, int, str, str, ssl.SSLContext | None], Pool] = {}
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout

    def get(self, ip: str, port: int, identity: str, server_name: str, tcp_labels: tuple[str, ...],
            origination: ssl.SSLContext | None = None) -> Pool:
        key = (ip, port, identity, server_name, origination)
        p = self._pools.get(key)
        if p is None:
            if len(self._pools) > 4096:
                for old in self._pools.values():
                    old.close()
                self._pools.clear()
            p = self._pools[key] = Pool(ip, port, identity, server_name, self.connector,
                                        self._metrics.tcp(tcp_labels), max_idle=self.max_idle,
                                        idle_timeout=self.idle_timeout, origination=origination)
        return p

    def close(self) -> None:
        for p in self._pools.values():
            p.close()
