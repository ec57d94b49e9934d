"""One HTTP/2 stream through the proxy: route it, forward it as a stream of a pooled upstream
connection, relay the response with flow control, apply the route policy (fault abort and
delay, route and per-try timeouts, retries within the budget, including gRPC statuses)."""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import h2.exceptions

from ..errors import ConnectError, ProxyError
from ..exchange import Reply, Route
from ..routes import apply_ops
from . import grpc
from .heads import request_head, response_headers, status_of, upstream_headers
from .policy import CANCEL, StreamPolicy
from .upgrade import H1AppPool, is_upgraded
from .upstream import H2Upstream

if TYPE_CHECKING:
    from .server import H2Server

MAX_REPLAY = 64 * 1024
"""Request bodies up to this size are kept for retries."""


class H2Exchange(StreamPolicy):
    """A downstream stream and its current upstream try (implements `upstream.StreamSink`)."""

    def __init__(self, srv: H2Server, sid: int, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        self.srv = srv
        self.sid = sid
        self.head = request_head(headers)  # ProtocolError: the server refuses the stream
        self.grpc = grpc.is_grpc(headers)
        self.deadline = grpc.timeout_of(headers) if self.grpc else None
        """The client's `grpc-timeout` (seconds from the start of the stream), enforced by the proxy."""
        self.req_trailers: list[tuple[bytes, bytes]] | None = None
        self.h1_app = srv.ctx.direction == "inbound" and is_upgraded(headers)
        self.scheme = next((v for n, v in headers if n == b":scheme"), b"http")
        self.start = time.monotonic()
        self.req_q: deque[tuple[bytes, int]] = deque()
        """Request data not yet sent upstream, with its flow-controlled length (acknowledged when sent)."""
        self.req_ended = ended
        self.req_end_sent = False
        self.replay: list[bytes] | None = []
        self.replay_size = 0
        self.route: Route | None = None
        self.metrics: Any = None
        self.up: H2Upstream | None = None
        self.up_sid = 0
        self.resp_q: deque[tuple[Any, ...]] = deque()
        self.resp_started = False
        self.done = False
        self.counted = False
        self.status = 0
        self.grpc_status: int | None = None
        self.latency_ms = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.try_timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.fresh_retry = False
        self.mirrored = False
        self.permit: Any = None
        """The cluster `Limiter` whose request slot this stream holds (http2MaxRequests)."""

    # === routing ===

    def begin(self) -> None:
        srv = self.srv
        if self.deadline is not None:
            self.timer = asyncio.get_running_loop().call_later(self.deadline, self._on_timeout)
        try:
            got = srv.router.route_now(self.head, srv.ctx)
        except ProxyError as e:
            self.local_error(e)
            return
        if got is None:
            self._spawn(self._route_async())
        else:
            self._routed(got)

    async def _route_async(self) -> None:
        try:
            got = await self.srv.router.route(self.head, self.srv.ctx)
        except ProxyError as e:
            self.local_error(e)
            return
        self._routed(got)

    def _spawn(self, coro: Any) -> None:
        self.task = asyncio.get_running_loop().create_task(self._guard(coro))

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug fails this stream, not the connection
            self.srv.log.warning("h2.internal_error", error=f"{type(e).__name__}: {e}")
            self.local_error(ProxyError(f"internal proxy error: {type(e).__name__}"))
        finally:
            if self.task is asyncio.current_task():
                self.task = None

    def _routed(self, got: Route | Reply) -> None:
        if self.done:
            return
        if type(got) is Reply:
            self._reply(got)  # type: ignore[arg-type]
            return
        route: Route = got  # type: ignore[assignment]
        self.route = route
        self.metrics = route.metrics
        plan = route.plan
        if plan is not None:
            if not self._admit(plan):
                return
            if plan.timeout > 0 and (self.deadline is None or
                                     plan.timeout < self.deadline - (time.monotonic() - self.start)):
                if self.timer is not None:
                    self.timer.cancel()
                self.timer = asyncio.get_running_loop().call_later(plan.timeout, self._on_timeout)
            if plan.delay:
                self._spawn(self._delayed(route, plan.delay))
                return
        self._go(route)

    async def _delayed(self, route: Route, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self.done:
            self._go(route)

    def _go(self, route: Route) -> None:
        self.route = route
        try:
            if self.h1_app:  # was HTTP/1.1 at the client's proxy (h2UpgradePolicy): HTTP/1.1 to the app
                pool = H1AppPool(route.pool.ip, route.pool.port, self.srv.pools.connect_timeout)
            else:
                pool = self.srv.pools.get(route.pool)
        except ProxyError as e:
            self.local_error(e)
            return
        per_conn = route.plan.cluster.policy.max_requests_per_connection if route.plan is not None else 0
        up = None if self.fresh_retry else (pool.take(per_conn) if per_conn else pool.take())
        if up is not None:
            self._send(up)
        else:
            self._spawn(self._connect(route, pool))

    async def _connect(self, route: Route, pool: Any) -> None:
        plan = route.plan
        while True:
            try:
                timeout = plan.cluster.policy.connect_timeout if plan is not None else 0.0
                per_conn = plan.cluster.policy.max_requests_per_connection if plan is not None else 0
                up = await (pool.acquire(timeout, per_conn) if per_conn else pool.acquire(timeout))
                break
            except ConnectError as e:
                if plan is None or not plan.retry.on_connect or not self._may_retry():
                    self.local_error(e, failed=True)
                    return
                self._report(0)
                route = self.srv.router.endpoint_route(plan, self.srv.ctx)
                self.route = route
                pool = self.srv.pools.get(route.pool)
        if not self.done:
            self._send(up)

    # === request: downstream → upstream ===

    def _send(self, up: H2Upstream) -> None:
        route = self.route
        assert route is not None
        plan = route.plan
        head = plan.head if plan is not None else self.head
        if not self.counted:
            self.counted = True
            route.metrics.requests += 1
            if plan is not None:
                plan.cluster.budget.request(time.monotonic())
        if route.load is not None:
            route.load.start()
        if plan is not None and plan.retry.per_try_timeout > 0:
            self.try_timer = asyncio.get_running_loop().call_later(plan.retry.per_try_timeout, self._on_try_timeout)
        end = self.req_ended and not self.req_q and self.req_trailers is None
        self.up = up
        per_conn = plan.cluster.policy.max_requests_per_connection if plan is not None else 0
        try:
            self.up_sid = up.open(upstream_headers(head, self.scheme), end, self, per_conn)
        except h2.exceptions.H2Error as e:  # the connection closed or filled up since it was taken
            self.up = None
            self.local_error(ConnectError(f"upstream HTTP/2 connection unusable: {e}"), failed=True)
            return
        self.req_end_sent = end
        self._maybe_mirror()
        if not end:
            self.flush_req()

    def on_req_data(self, data: bytes, flow: int) -> None:
        if self.replay is not None:
            self.replay_size += len(data)
            if self.replay_size <= MAX_REPLAY:
                self.replay.append(data)
            else:
                self.replay = None
        self.req_q.append((data, flow))
        if self.up_sid:
            self.flush_req()
        elif self.done:
            self.srv.ack(self.sid, flow)
            self.req_q.clear()

    def on_req_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Request trailers (gRPC clients may send them): forwarded after the body."""
        self.req_trailers = [(n, v) for n, v in headers if n[:1] != b":"]

    def on_req_end(self) -> None:
        self.req_ended = True
        if self.up_sid:
            self._maybe_mirror()
            self.flush_req()

    def flush_req(self) -> None:
        up, sid, q = self.up, self.up_sid, self.req_q
        if up is None or not sid or sid not in up.streams:
            return
        while q:
            data, flow = q[0]
            w = up.window(sid)
            if w <= 0:
                break
            if len(data) <= w:
                up.send(sid, data)
                q.popleft()
                self.srv.ack(self.sid, flow)
            else:
                up.send(sid, data[:w])
                q[0] = (data[w:], flow)
        if not q and self.req_ended and not self.req_end_sent:
            if self.req_trailers is not None:
                up.trailers(sid, self.req_trailers)
            else:
                up.end(sid)
            self.req_end_sent = True
        up.flush()
        self.srv.flush()

    def up_window(self) -> None:
        self.flush_req()

    # === response: upstream → downstream ===

    def up_head(self, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        route = self.route
        assert route is not None
        self._try_over()
        status = status_of(headers)
        gs = grpc.status_of(headers) if ended else None
        plan = route.plan
        now = time.monotonic()
        if route.load is not None:
            route.load.end(now - self.start, now)
        if plan is not None:
            self._report(status)
            r = plan.retry
            if r.attempts and (r.status_retriable(status) or (gs is not None and gs in r.grpc_codes)) and \
                    self._may_retry():
                self._retry()
                return
        out = response_headers(headers)
        if plan is not None and plan.resp_ops:
            for ops in plan.resp_ops:
                out = apply_ops(out, ops)
            out = [(n.lower(), v) for n, v in out]
        self.status = status
        self.grpc_status = gs
        self.latency_ms = (now - self.start) * 1000.0
        self.resp_started = True
        self.srv.send_headers(self.sid, out, ended)
        if ended:
            self._complete()
        self.srv.flush()

    def up_data(self, data: bytes, flow: int) -> None:
        self.resp_q.append((0, data, flow))
        self.flush_resp()

    def up_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.grpc_status = grpc.status_of(headers)
        self.resp_q.append((1, response_headers(headers)))
        self.flush_resp()

    def up_end(self) -> None:
        if not self.resp_q or self.resp_q[-1][0] != 1:
            self.resp_q.append((2,))
        self.flush_resp()

    def down_window(self) -> None:
        self.flush_resp()

    def flush_resp(self) -> None:
        srv, sid, q = self.srv, self.sid, self.resp_q
        while q and not self.done:
            item = q[0]
            kind = item[0]
            if kind == 0:
                data, flow = item[1], item[2]
                w = srv.window(sid)
                if w <= 0 and data:
                    break
                if len(data) <= w:
                    srv.send(sid, data)
                    q.popleft()
                    if flow and self.up is not None:
                        self.up.ack(self.up_sid, flow)
                else:
                    srv.send(sid, data[:w])
                    q[0] = (0, data[w:], flow)
            elif kind == 1:
                q.popleft()
                srv.send_headers(sid, item[1], True)
                self._complete()
            else:
                q.popleft()
                srv.end(sid)
                self._complete()
        srv.flush()
        if self.up is not None:
            self.up.flush()

    def up_reset(self, code: int, refused: bool) -> None:
        if self.done:
            return
        self._try_over()
        route = self.route
        plan = route.plan if route is not None else None
        if route is not None and route.load is not None:
            now = time.monotonic()
            route.load.end(now - self.start, now)
        if not self.resp_started:
            if plan is not None:
                self._report(0)
                if (refused or plan.retry.on_reset) and self._may_retry():
                    self._retry()
                    return
            elif refused and self.replay is not None and self.req_ended and not self.fresh_retry:
                self.fresh_retry = True  # a connection closing under us: once more on a fresh one
                self._retry()
                return
            self.local_error(ConnectError(f"upstream reset the stream (HTTP/2 error {code})"), failed=True)
            return
        # passed on: CANCEL, ENHANCE_YOUR_CALM, REFUSED_STREAM; anything else becomes INTERNAL_ERROR
        self.srv.reset(self.sid, code if code in (CANCEL, 11, 7) else 2)
        self.status = self.status or 502
        if self.grpc and self.grpc_status is None:
            self.grpc_status = grpc.UNAVAILABLE
        self._complete()

    # === end ===

    def _complete(self) -> None:
        if self.done:
            return
        self.done = True
        self._release()
        for t in (self.timer, self.try_timer):
            if t is not None:
                t.cancel()
        self.timer = self.try_timer = None
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
            self.task = None
        if self.metrics is not None:
            self.metrics.response(self.status, self.latency_ms, self.grpc_status)
        for _, flow in self.req_q:
            self.srv.ack(self.sid, flow)
        self.req_q.clear()
        self.srv.forget(self.sid)

    def cancel(self) -> None:
        """The client reset the stream or the connection is gone."""
        if self.done:
            return
        self._abandon()
        self.done = True
        self._release()
        for t in (self.timer, self.try_timer):
            if t is not None:
                t.cancel()
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.metrics is not None and self.resp_started:
            self.metrics.response(self.status, self.latency_ms, self.grpc_status)
        self.srv.forget(self.sid)
