"""The downstream side of HTTP/1: one protocol per accepted connection.

Requests are parsed with `RequestParser`, routed (`Router`), forwarded on a
pooled upstream connection and the raw response is streamed back. Requests
are served one at a time in order (pipelined ones wait, reading pauses).
Proxy errors become responses here, once, with `meshlet-proxy-error`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from . import splice
from .client import Upstream
from .errors import ConnectError, ProtocolError, ProxyError
from .exchange import ConnCtx, Exchange, Reply, Route, Router
from .flow import PolicyFlow
from .http1 import LAST_CHUNK, Body, RequestEnd, RequestHead, RequestParser, ResponseHead, Upgrade, encode_chunk
from .metrics import TcpMetrics
from .routes import response_head_ops

MAX_BUFFERED = 256 * 1024
"""Request body bytes buffered before reading pauses (while the upstream connects)."""
MAX_REPLAY = 64 * 1024


class HttpServer(PolicyFlow, asyncio.Protocol):
    def __init__(self, router: Router, ctx: ConnCtx, metrics: TcpMetrics | None, conns: set[Any],
                 log: Any) -> None:
        self.router = router
        self.ctx = ctx
        self.metrics = metrics
        self.parser = RequestParser()
        self.queue: deque[Exchange] = deque()
        self.reading: Exchange | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.upgrading = False
        self.eof = False
        self.draining = False
        self.paused = False
        """Reading paused for a backlog (pipelined requests, buffered body)."""
        self.up_blocked = False
        """Reading paused because the upstream's write buffer is full."""
        self.write_blocked = False
        """Our write buffer towards the client is full: the upstream must not be read."""
        self._reading = True
        self.input_dead = False
        self.pending_error: ProtocolError | None = None
        self._conns = conns
        self._log = log
        self._debug = _debug_enabled(log)
        self._task: asyncio.Task[None] | None = None
        self._route_now = getattr(router, "route_http1", None) or router.route_now

    # === downstream events ===

    def attach(self, transport: asyncio.Transport, initial: bytes) -> None:
        self.transport = transport
        self._conns.add(self)
        transport.set_protocol(self)
        self._reading = False  # Sniff.take() paused it
        if initial:
            self.data_received(initial)
        self._set_reading()

    def data_received(self, data: bytes) -> None:
        if self.metrics is not None:
            self.metrics.read_bytes += len(data)
        if self.closed or self.input_dead:
            return
        if self.upgrading:
            ex = self.reading
            if ex is not None and ex.upstream is not None:
                ex.upstream.write(data)
            elif ex is not None:
                ex.upgrade_buf += data
                self._maybe_pause(len(ex.upgrade_buf))
            return
        try:
            events = self.parser.feed(data)
        except ProtocolError as e:
            self._process(getattr(e, "events", []))
            if not self.closed:
                self._bad_request(e)
            return
        self._process(events)

    def _process(self, events: list) -> None:  # type: ignore[type-arg]
        # a request is dispatched after the whole batch, so a complete small request
        # goes upstream in one write and can be replayed on a stale pooled connection
        start: Exchange | None = None
        for ev in events:
            t = type(ev)
            if t is Body:
                ex = self.reading
                assert ex is not None
                if ex.body is None:  # streaming to the upstream
                    ex.upstream.write(encode_chunk(ev.data) if ex.head.chunked else ev.data)  # type: ignore
                else:
                    ex.body.append(ev.data)
                    ex.buffered += len(ev.data)
                    self._maybe_pause(ex.buffered)
            elif t is RequestHead:
                ex = Exchange(ev)  # type: ignore[arg-type]
                self.reading = ex
                self.queue.append(ex)
                if len(self.queue) == 1:
                    start = ex
                elif not self.paused:
                    self.paused = True
                    self._set_reading()
            elif t is RequestEnd:
                ex = self.reading
                assert ex is not None
                ex.body_done = True
                if ex.body is None and ex.head.chunked and ex.upstream is not None:
                    ex.upstream.write(LAST_CHUNK)
            elif t is Upgrade:
                self.upgrading = True
                ex = self.reading
                assert ex is not None
                if ex.upstream is not None:
                    ex.upstream.write(ev.rest)  # type: ignore[union-attr]
                else:
                    ex.upgrade_buf += ev.rest  # type: ignore[union-attr]
        if start is not None and not self.closed and self.queue and self.queue[0] is start:
            self._start(start)

    def eof_received(self) -> bool:
        self.eof = True
        if not self.queue:
            return False
        return True  # half-closed: finish the responses first

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._conns.discard(self)
        if self.metrics is not None:
            self.metrics.closed("" if exc is None else type(exc).__name__)
        if self._task is not None:
            self._task.cancel()
        for ex in self.queue:
            self._finish(ex)
            if ex.upstream is not None:
                if ex.route is not None and ex.route.load is not None and not ex.resp_started:
                    ex.route.load.pending = max(ex.route.load.pending - 1, 0)
                ex.upstream.close()
        self.queue.clear()

    def pause_writing(self) -> None:
        self.write_blocked = True
        ex = self.queue[0] if self.queue else None
        if ex is not None and ex.upstream is not None:
            ex.upstream.set_reading(False)

    def resume_writing(self) -> None:
        self.write_blocked = False
        ex = self.queue[0] if self.queue else None
        if ex is not None and ex.upstream is not None:
            ex.upstream.set_reading(True)

    def drain(self) -> None:
        """Graceful shutdown: close now when idle, else after the current response."""
        self.draining = True
        if not self.queue and not self.closed:
            self._close()

    # === dispatch ===

    def _maybe_pause(self, buffered: int) -> None:
        if buffered > MAX_BUFFERED and not self.paused:
            self.paused = True
            self._set_reading()

    def _set_reading(self) -> None:
        want = not (self.paused or self.up_blocked)
        if want != self._reading and self.transport is not None and not self.closed:
            self._reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _start(self, ex: Exchange) -> None:
        ex.start = time.monotonic()
        try:
            route = self._route_now(ex.head, self.ctx)
        except ProxyError as e:
            self._local_error(ex, e)
            return
        if type(route) is Reply:
            self._reply(ex, route)
            return
        if route is not None:
            if route.plan is not None and self._plan_waits(ex, route):  # type: ignore[union-attr]
                return
            up = route.pool.take_idle()  # type: ignore[union-attr]
            if up is not None:
                self._send(ex, route, up)
                return
        self._task = asyncio.get_running_loop().create_task(self._start_async(ex, route, None))

    async def _start_async(self, ex: Exchange, route: Route | None, fresh: bool | None) -> None:
        try:
            if route is None:
                got = await self.router.route(ex.head, self.ctx)
                if type(got) is Reply:
                    self._task = None
                    if not self.closed:
                        self._reply(ex, got)
                    return
                route = got  # type: ignore[assignment]
            plan = route.plan
            if plan is not None and not ex.armed:
                await self._policy_start(ex, plan)
            while True:
                try:
                    up = None if fresh else route.pool.take_idle()
                    if up is None:
                        cluster = plan.cluster if plan is not None else route.seed.cluster if route.seed else None
                        up = await route.pool.connect(cluster.policy.connect_timeout if cluster is not None else 0.0)
                    break
                except ConnectError:
                    if plan is None and route.seed is not None:  # fast path: retried like a planned request
                        plan = route.seed.plan(ex.head, (route.pool.ip, route.pool.port))
                        ex.armed = True
                    if plan is None or not self._connect_retry(ex, plan):
                        raise
                    route = self.router.endpoint_route(plan, self.ctx)  # type: ignore[attr-defined]
        except ProxyError as e:
            self._task = None
            if not self.closed:
                self._local_error(ex, e, counted=ex.route is not None)
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug must fail this request, not hang it
            self._task = None
            self._log.warning("request.internal_error", error=f"{type(e).__name__}: {e}")
            if not self.closed:
                self._local_error(ex, ProxyError(f"internal proxy error: {type(e).__name__}"))
            return
        self._task = None
        if self.closed or not self.queue or self.queue[0] is not ex:
            route.pool.release(up)
            return
        self._send(ex, route, up)

    def _send(self, ex: Exchange, route: Route, up: Upstream) -> None:
        ex.route = route
        ex.upstream = up
        up.sink = self
        up.uses += 1
        if self.write_blocked:
            up.set_reading(False)
        if up.write_blocked:
            self.up_blocked = True
            self._set_reading()
        head = ex.head
        up.framer.start(head_request=head.method == b"HEAD")
        plan = route.plan
        if plan is not None:
            head = plan.head
            self._arm_try(ex, plan)
        if ex.replay is None:
            route.metrics.requests += 1
            if route.load is not None:
                route.load.start()
            if plan is not None:
                plan.cluster.budget.request(time.monotonic())
            elif route.seed is not None:
                route.seed.cluster.budget.request(time.monotonic())
            data = head_bytes = head.serialize()
            body = ex.body
            if head.chunked:
                parts = [head_bytes] + [encode_chunk(b) for b in body or () if b]
                if ex.body_done:
                    parts.append(LAST_CHUNK)
                data = b"".join(parts)
            elif body:
                data = b"".join([head_bytes, *body])
            if ex.body_done and len(data) <= MAX_REPLAY and not head.upgrade:
                ex.replay = data
                if plan is not None and plan.mirror is not None:
                    self._mirror(plan, data, len(head_bytes))
        else:
            data = ex.replay
            if ex.restart_load and route.load is not None:
                route.load.start()
            ex.restart_load = False
        ex.body = None
        up.write(data)
        if ex.upgrade_buf:
            up.write(ex.upgrade_buf)
            ex.upgrade_buf = b""
        if self.paused and len(self.queue) == 1:
            self.paused = False
            self._set_reading()

    # === upstream events (Sink) ===

    def up_head(self, up: Upstream, head: ResponseHead) -> bytes:
        """Metrics and balancer feedback; returns the head to forward (with the next `up_data`)."""
        ex = self.queue[0]
        if head.informational:
            return head.raw
        route = ex.route
        assert route is not None
        raw = head.raw
        plan = route.plan
        if plan is not None:
            if not self._policy_head(ex, plan, head.status):
                return b""  # retried: this try's response is dropped with its connection
            if plan.resp_ops:
                raw = response_head_ops(raw, plan.resp_ops)
        ex.resp_started = True
        ex.status = head.status
        now = time.monotonic()
        route.metrics.response(head.status, (now - ex.start) * 1000.0)
        if route.load is not None:
            route.load.end(now - ex.start, now)
        if head.keep_alive and (not ex.head.keep_alive or self.draining):
            # the client's connection closes after this response: say so (RFC 9112 §9.6)
            return raw[:-2] + b"connection: close\r\n\r\n"
        return raw

    def up_data(self, up: Upstream, raw: bytes) -> None:
        self._write(raw)

    def up_end(self, up: Upstream, leftover: bytes) -> None:
        ex = self.queue.popleft()
        self.up_blocked = False
        route = ex.route
        assert route is not None
        if route.plan is not None:
            self._finish(ex)
        # an Upgrade request answered without 101: the client may already send the new protocol
        reusable = up.framer.keep_alive and ex.body_done and not ex.head.upgrade
        keep_client = reusable and ex.head.keep_alive and not self.draining
        if not leftover and reusable and ex.head.upstream_keep_alive and \
                (route.plan is None or not route.plan.cluster.spent(up.uses)):
            route.pool.release(up)
        else:
            up.close()
        if not keep_client or (self.eof and not self.queue):
            self._close()
            return
        self._next()

    def up_upgraded(self, up: Upstream) -> None:
        ex = self.queue.popleft()
        self._finish(ex)
        self.queue.clear()
        self.closed = True  # this protocol is done; the splice owns both transports now
        self._conns.discard(self)
        up_metrics = up.metrics
        up.metrics = None
        up.sink = None
        splice.join(self.transport, self.metrics, up.transport, up_metrics)  # type: ignore[arg-type]
        del ex

    def up_error(self, up: Upstream, err: Exception) -> None:
        if not self.queue:
            return
        ex = self.queue[0]
        up.close()
        if ex.resp_started:
            self._close()  # the response is cut short: so is the client's connection
            return
        if up.reused and not up.got_bytes and ex.replay is not None and not ex.retried:
            ex.retried = True  # a pooled connection the server had closed: once more on a fresh one
            self._task = asyncio.get_running_loop().create_task(self._start_async(ex, ex.route, True))
            return
        plan = ex.route.plan if ex.route is not None else None
        if plan is not None:
            if self._policy_error(ex, plan, connect=False):
                return
        if ex.route is not None and ex.route.load is not None:
            now = time.monotonic()
            ex.route.load.end(now - ex.start, now)
        msg = str(err) if isinstance(err, ProxyError) else f"upstream failed: {err}"
        self._local_error(ex, ConnectError(msg), counted=True)

    def up_pause(self, paused: bool) -> None:
        self.up_blocked = paused
        self._set_reading()

    # === helpers ===

    def _write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]
        if self.metrics is not None:
            self.metrics.write_bytes += len(data)

    def _next(self) -> None:
        self.up_blocked = False
        if not self.queue and self.pending_error is not None:
            self._answer_bad_request(self.pending_error)
            return
        if self.queue:
            self._start(self.queue[0])
        else:
            self.paused = False
        self._set_reading()
        if self.draining and not self.queue:
            self._close()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def _debug_enabled(log: Any) -> bool:
    """Whether `log` emits debug events (structlog's filtering loggers say; others: assume so)."""
    check = getattr(log, "is_enabled_for", None)
    return bool(check(logging.DEBUG)) if check is not None else True
