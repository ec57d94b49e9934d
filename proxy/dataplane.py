"""The data listeners: accept → original destination → (TLS) → detect → HTTP server or TCP splice."""
from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

from . import splice
from .client import Connector, Pools
from .config import ProxyConfig
from .detect import Detected, is_tls_client_hello
from .errors import ProxyError
from .identity import IdentityManager
from .metrics import ProxyMetrics, TcpMetrics
from .origdst import original_dst, peek
from .routing import InboundRouter, OutboundRouter, TcpRoute
from .exchange import ConnCtx
from .h2.plane import H2Plane
from .server import HttpServer
from .sniff import Sniff
from .tlssni import NeedMore, SniError, parse_sni
from .tlsctx import peer_id


def handshake_reason(err: BaseException) -> str:
    if isinstance(err, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    reason = (getattr(err, "reason", None) or "").lower()
    if "unknown_ca" in reason or "certificate_verify_failed" in reason or "bad_certificate" in reason:
        return "unknown_ca"
    if "did_not_return_a_certificate" in reason or "certificate_required" in reason:
        return "no_client_cert"
    return "other"


class DataPlane:
    def __init__(self, cfg: ProxyConfig, *, metrics: ProxyMetrics, idm: IdentityManager | None,
                 outbound: OutboundRouter, inbound: InboundRouter, connector: Connector, pools: Pools,
                 log: Any) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.idm = idm
        self.outbound = outbound
        self.inbound = inbound
        self.connector = connector
        self.pools = pools
        self.log = log.bind(component="dataplane")
        self.http_conns: set[HttpServer] = set()
        self.h2 = H2Plane(outbound, inbound, idm, self.http_conns, log,  # type: ignore[arg-type]
                          connect_timeout=cfg.connect_timeout, idle_timeout=cfg.idle_timeout)
        self._tasks: set[asyncio.Task[None]] = set()

    # === outbound ===

    async def handle_outbound(self, sock: socket.socket) -> None:
        try:
            ip, port = original_dst(sock)
        except OSError as e:
            self.log.info("outbound.no_original_dst", error=str(e))
            sock.close()
            return
        if (ip, port) == sock.getsockname()[:2]:
            self.log.info("outbound.loop", dst=f"{ip}:{port}")
            sock.close()
            return
        ctx = ConnCtx("outbound", ip, port)
        m = self.metrics.tcp(self.metrics.base("outbound") + ("src",))
        await self._serve(sock, ctx, m, self.cfg.detect_timeout, ssl_ctx=None)

    # === inbound ===

    async def handle_inbound(self, sock: socket.socket) -> None:
        try:
            ip, port = original_dst(sock)
        except OSError as e:
            self.log.info("inbound.no_original_dst", error=str(e))
            sock.close()
            return
        try:
            first = await peek(sock, self.cfg.detect_timeout)
        except OSError:
            sock.close()
            return
        if is_tls_client_hello(first):
            mat = self.idm.current if self.idm is not None else None
            if mat is None:
                self.metrics.handshake_failed("no_identity")
                sock.close()
                return
            await self._serve(sock, ConnCtx("inbound", ip, port, tls=True), None, self.cfg.detect_timeout,
                              ssl_ctx=mat.server_ctx)
            return
        ctx = ConnCtx("inbound", ip, port)
        m = self.metrics.tcp(self.metrics.base("inbound") + ("src",))
        await self._serve(sock, ctx, m, self.cfg.detect_timeout if first else 0.0, ssl_ctx=None)

    async def _serve(self, sock: socket.socket, ctx: ConnCtx, m: TcpMetrics | None, timeout: float,
                     ssl_ctx: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            peer = sock.getpeername()
        except OSError:  # already gone
            sock.close()
            return
        sniff = Sniff(timeout, m)
        if ssl_ctx is None:
            try:
                await loop.connect_accepted_socket(lambda: sniff, sock)
            except OSError:
                sock.close()
                return
        else:
            try:
                # uvloop returns its SSLProtocol here, not ours: keep our own reference
                transport, _ = await loop.connect_accepted_socket(
                    lambda: sniff, sock, ssl=ssl_ctx, ssl_handshake_timeout=10.0)
            except (ssl.SSLError, OSError, asyncio.TimeoutError) as e:
                reason = handshake_reason(e)
                self.metrics.handshake_failed(reason)
                self.log.info("inbound.tls_handshake_failed", peer=f"{peer[0]}:{peer[1]}", reason=reason,
                              error=str(e))
                sock.close()
                return
            ctx.client_id = peer_id(transport.get_extra_info("peercert"))
            m = self.metrics.tcp(self.metrics.base("inbound", tls=True, client_id=ctx.client_id) + ("src",))
            if sniff.lost:
                return
            sniff.metrics = m
            m.opened()
        sniff.set_handler(lambda s, verdict: self._detected(s, verdict, ctx))

    def _detected(self, sniff: Sniff, verdict: Detected, ctx: ConnCtx) -> None:
        if sniff.transport is None or sniff.lost:
            return
        if verdict is Detected.HTTP1:
            router = self.outbound if ctx.direction == "outbound" else self.inbound
            server = HttpServer(router, ctx, sniff.metrics, self.http_conns, self.log)  # type: ignore[arg-type]
            server.attach(sniff.transport, sniff.take())
            return
        if verdict is Detected.HTTP2:
            self.h2.serve(sniff, ctx)
            return
        task = asyncio.get_running_loop().create_task(self._opaque(sniff, ctx))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # === opaque TCP ===

    async def _opaque(self, sniff: Sniff, ctx: ConnCtx) -> None:
        route: TcpRoute | None = None
        try:
            if ctx.direction == "outbound":
                route = await self.outbound.route_tcp(ctx, await self._sni(sniff))
            else:
                if ctx.orig_port in self.cfg.ports.all():
                    raise ProxyError(f"inbound connection to proxy port {ctx.orig_port}")
                route = TcpRoute(self.cfg.inbound_app_ip, ctx.orig_port, "", "",
                                 self.metrics.base("inbound", tls=ctx.tls, client_id=ctx.client_id))
            hold = splice.Holding(self.metrics.tcp(route.labels + ("dst",)))
            up_t = await self.connector.connect(route.ip, route.port, route.identity, route.server_name, hold,
                                                origination=route.origination)
        except asyncio.CancelledError:
            if route is not None:
                route.release()
            if sniff.transport is not None:
                sniff.transport.close()
            raise
        except Exception as e:  # noqa: BLE001 - ProxyError or a bug: this connection fails, nothing else
            level = self.log.info if isinstance(e, ProxyError) else self.log.warning
            level("tcp.connect_failed", direction=ctx.direction, dst=f"{ctx.orig_ip}:{ctx.orig_port}",
                  error=str(e) if isinstance(e, ProxyError) else f"{type(e).__name__}: {e}")
            if route is not None:
                route.release()
            if sniff.transport is not None:
                sniff.transport.close()
            return
        if sniff.lost or sniff.transport is None:
            up_t.close()
            route.release()
            return
        buf = sniff.take()
        down_end, up_end = splice.join(sniff.transport, sniff.metrics, up_t, None if hold.lost else hold.metrics,
                                       to_b=buf, to_a=hold.buf)
        if hold.lost:
            route.release()
        else:
            up_end.on_close(route.release)
        if sniff.eof:
            down_end.eof_received()
        if hold.eof or hold.lost:
            up_end.eof_received()

    async def _sni(self, sniff: Sniff) -> str | None:
        """The app's ClientHello's SNI when it starts TLS ("" without one), None when it does not."""
        if not is_tls_client_hello(sniff.buf):
            return None
        deadline = asyncio.get_running_loop().time() + max(self.cfg.detect_timeout, 1.0)
        while True:
            try:
                return parse_sni(sniff.buf)
            except NeedMore:
                if sniff.eof or sniff.lost or asyncio.get_running_loop().time() > deadline:
                    return ""
                await asyncio.sleep(0.002)  # the rest of the hello is on its way (Sniff keeps buffering)
            except SniError:
                return ""

    def drain(self) -> None:
        for conn in list(self.http_conns):
            conn.drain()
