"""Responses the proxy makes and the route-policy side of one HTTP exchange (a mixin of
`server.HttpServer`).

Errors (`ProxyError`, malformed requests) and `Reply`s become responses here. Requests
whose route carries a `Plan` (outbound, with a profile) get fault delays, the route
timeout (504), per-try timeouts, retries within the retry budget, connection-pool
permits, outlier reports and mirroring.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from .errors import ProtocolError, ProxyError, Timeout, error_response
from .exchange import Exchange, Plan, Reply, Route


class PolicyFlow:
    # provided by HttpServer
    queue: Any
    closed: bool
    draining: bool
    upgrading: bool
    input_dead: bool
    pending_error: ProtocolError | None
    ctx: Any
    router: Any
    _log: Any
    _debug: bool
    _task: asyncio.Task[None] | None

    def _write(self, data: bytes) -> None: ...
    def _close(self) -> None: ...
    def _next(self) -> None: ...
    async def _start_async(self, ex: Exchange, route: Route | None, fresh: bool | None) -> None: ...

    def _local_error(self, ex: Exchange, err: ProxyError, counted: bool = False) -> None:
        """Answer the first queued exchange with a proxy-generated error."""
        self._finish(ex)
        status = err.status
        m = ex.route.metrics if ex.route is not None else self.router.error_metrics(ex.head, self.ctx)
        if not counted:
            m.requests += 1
        m.response(status, (time.monotonic() - ex.start) * 1000.0)
        close = not (ex.body_done and ex.head.keep_alive and not ex.head.upgrade) or self.draining
        msg = str(err)
        if self._debug:  # the arguments are not built when debug logging is off
            self._log.debug("request.failed", error=msg, status=status, authority=ex.head.host.decode("latin-1"))
        self._write(error_response(status, msg, close=close))
        if self.queue and self.queue[0] is ex:
            self.queue.popleft()
        if close:
            self.queue.clear()
            self._close()
            return
        self._next()

    def _bad_request(self, err: ProtocolError) -> None:
        """Malformed input: 400 (after the responses already in progress), then close."""
        self.upgrading = False
        self.input_dead = True
        self._log.info("request.malformed", error=str(err), direction=self.ctx.direction)
        if self.queue:
            # answer the requests parsed before the bad bytes, then the 400
            first = self.queue[0]
            self.queue.clear()
            self.queue.append(first)
            self.pending_error = err
            return
        self._answer_bad_request(err)

    def _answer_bad_request(self, err: ProtocolError) -> None:
        m = self.router.error_metrics(None, self.ctx)
        m.requests += 1
        m.response(400, 0.0)
        self._write(error_response(400, str(err), close=True))
        self._close()

    def _plan_waits(self, ex: Exchange, route: Route) -> bool:
        """A fault delay or a pool permit to wait for: True when the exchange went on asynchronously."""
        plan = route.plan
        assert plan is not None
        if plan.delay or plan.cluster.limiter is not None:
            self._task = asyncio.get_running_loop().create_task(self._start_async(ex, route, None))
            return True
        self._arm(ex, plan)
        return False

    def _reply(self, ex: Exchange, reply: Reply) -> None:
        """Answer the first queued exchange with a response the proxy makes itself."""
        close = not (ex.body_done and ex.head.keep_alive and not ex.head.upgrade) or self.draining
        m = reply.metrics
        m.requests += 1
        m.response(reply.status, (time.monotonic() - ex.start) * 1000.0)
        data = reply.make(close)
        if ex.head.method == b"HEAD":  # the head only (content-length stays: RFC 9110 §9.3.2)
            data = data[:data.find(b"\r\n\r\n") + 4]
        self._write(data)
        self._finish(ex)
        if self.queue and self.queue[0] is ex:
            self.queue.popleft()
        if close:
            self.queue.clear()
            self._close()
            return
        self._next()

    async def _policy_start(self, ex: Exchange, plan: Plan) -> None:
        """Before the first try: the fault delay, the route timeout, a connection-pool permit."""
        if plan.delay:
            await asyncio.sleep(plan.delay)
        self._arm(ex, plan)
        lim = plan.cluster.limiter
        if lim is not None:
            await lim.acquire()  # Overflow (503) when the pending queue is full too
            ex.permit = lim

    def _arm(self, ex: Exchange, plan: Plan) -> None:
        ex.armed = True
        if plan.timeout > 0:
            ex.timer = asyncio.get_running_loop().call_later(plan.timeout, self._on_timeout, ex)

    def _arm_try(self, ex: Exchange, plan: Plan) -> None:
        if plan.retry.per_try_timeout > 0:
            if ex.try_timer is not None:
                ex.try_timer.cancel()
            ex.try_timer = asyncio.get_running_loop().call_later(plan.retry.per_try_timeout, self._on_try_timeout,
                                                                 ex)

    def _finish(self, ex: Exchange) -> None:
        """The exchange is over: timers off, pool permit back."""
        if ex.timer is not None:
            ex.timer.cancel()
            ex.timer = None
        if ex.try_timer is not None:
            ex.try_timer.cancel()
            ex.try_timer = None
        if ex.permit is not None:
            ex.permit.release()
            ex.permit = None

    def _abandon(self, ex: Exchange, reuse: bool = False) -> None:
        """Drop the current try's upstream connection (its response is not wanted). `reuse`: the
        response head was read: the rest is read and discarded and the connection pooled again
        when it stays reusable (a retried 503 then costs no new connection, nor mTLS handshake)."""
        up = ex.upstream
        if up is None:
            return
        ex.upstream = None
        r = ex.route
        if not (reuse and ex.body_done and ex.head.upstream_keep_alive and not ex.head.upgrade and r is not None
                and (r.plan is None or not r.plan.cluster.spent(up.uses)) and up.drain()):
            up.close()
        if r is not None and r.load is not None:
            now = time.monotonic()
            r.load.end(now - ex.start, now)

    def _on_timeout(self, ex: Exchange) -> None:
        ex.timer = None
        if self.closed or not self.queue or self.queue[0] is not ex:
            return
        if ex.resp_started:
            self._close()  # the response is cut short at the deadline
            return
        self._abandon(ex)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._local_error(ex, Timeout("timeout"), counted=ex.route is not None)

    def _on_try_timeout(self, ex: Exchange) -> None:
        ex.try_timer = None
        if self.closed or not self.queue or self.queue[0] is not ex or ex.resp_started or ex.route is None:
            return
        plan = ex.route.plan
        if plan is not None and self._may_retry(ex, plan):
            self._report(plan, 504)
            self._retry(ex, plan)
            return
        self._abandon(ex)
        self._local_error(ex, Timeout("timeout"), counted=True)

    def _report(self, plan: Plan, status: int) -> None:
        """Outlier detection: one result of the endpoint tried."""
        if plan.cluster.outlier is not None:
            total = len(plan.target.state.subset(plan.subset))
            plan.cluster.report(plan.addr, status, time.monotonic(), total)

    def _may_retry(self, ex: Exchange, plan: Plan) -> bool:
        """Attempts left, a replayable request, and budget (a retry counts against it)."""
        if plan.retries >= plan.retry.attempts or (ex.replay is None and ex.body is None):
            return False
        count = getattr(self.router, "count_retry", None)
        if not plan.cluster.budget.try_retry(time.monotonic()):
            if count is not None:
                count(plan.authority, "budget")
            return False
        plan.retries += 1
        if count is not None:
            count(plan.authority, "")
        return True

    def _retry(self, ex: Exchange, plan: Plan, reuse: bool = False) -> None:
        self._abandon(ex, reuse)
        if ex.try_timer is not None:
            ex.try_timer.cancel()
            ex.try_timer = None
        try:
            route = self.router.endpoint_route(plan, self.ctx)
        except ProxyError as e:
            self._local_error(ex, e, counted=True)
            return
        ex.restart_load = ex.replay is not None
        self._task = asyncio.get_running_loop().create_task(self._start_async(ex, route, None))

    def _policy_head(self, ex: Exchange, plan: Plan, status: int) -> bool:
        """A response head of the current try: False when it is retried instead of forwarded."""
        if ex.try_timer is not None:
            ex.try_timer.cancel()
            ex.try_timer = None
        self._report(plan, status)
        if plan.retry.attempts and plan.retry.status_retriable(status) and self._may_retry(ex, plan):
            self._retry(ex, plan, reuse=True)
            return False
        return True

    def _policy_error(self, ex: Exchange, plan: Plan, connect: bool) -> bool:
        """The current try failed before a response: True when it is retried."""
        self._report(plan, 0)
        r = plan.retry
        if (r.on_connect if connect else r.on_reset) and self._may_retry(ex, plan):
            self._retry(ex, plan)
            return True
        return False

    def _connect_retry(self, ex: Exchange, plan: Plan) -> bool:
        """Connecting to the chosen endpoint failed: True to try another one."""
        self._report(plan, 0)
        return plan.retry.on_connect and self._may_retry(ex, plan)

    def _mirror(self, plan: Plan, data: bytes, head_len: int) -> None:
        mirrors = getattr(self.router, "mirrors", None)
        if mirrors is not None and plan.mirror is not None:
            mirrors.send(plan.mirror, plan.head, data[head_len:])
