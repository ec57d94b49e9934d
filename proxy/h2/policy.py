"""The route policy and the proxy-made responses of an HTTP/2 stream (a mixin of
`stream.H2Exchange`): retries within the budget, per-try and route timeouts, outlier reports,
errors as responses (gRPC requests get trailers-only responses with a gRPC status)."""
from __future__ import annotations

import time
from collections import deque
from typing import Any

from ..errors import ProxyError, Timeout
from ..exchange import Reply
from . import grpc
from .heads import error_headers, from_http1

CANCEL = 8


class StreamPolicy:
    # provided by H2Exchange
    srv: Any
    sid: int
    head: Any
    grpc: bool
    route: Any
    metrics: Any
    replay: list[bytes] | None
    req_ended: bool
    req_q: deque[tuple[bytes, int]]
    req_end_sent: bool
    resp_q: deque[tuple[Any, ...]]
    resp_started: bool
    done: bool
    counted: bool
    status: int
    grpc_status: int | None
    latency_ms: float
    start: float
    up: Any
    up_sid: int
    timer: Any
    try_timer: Any
    task: Any

    def _go(self, route: Any) -> None: ...
    def _complete(self) -> None: ...
    def flush_resp(self) -> None: ...


    permit: Any
    mirrored: bool
    scheme: bytes

    def _admit(self, plan: Any) -> bool:
        """Before forwarding: a fault abort (gRPC status, HTTP/2 error) or no request slot of the
        cluster (http2MaxRequests: 503 / UNAVAILABLE) answers the stream; False then."""
        f = plan.spec.fault if plan.spec is not None else None
        if f is not None and not f.abort_status and f.abort_percent > 0 and (f.abort_grpc >= 0 or f.abort_h2 >= 0) \
                and self.srv.rng.random() * 100.0 < f.abort_percent:
            if f.abort_grpc >= 0:
                self.metrics = self.srv.router.error_metrics(self.head, self.srv.ctx)
                self._send_local(200, grpc.trailers_only(f.abort_grpc, "fault injected"), b"", f.abort_grpc)
            else:
                self._abort_stream(f.abort_h2)
            return False
        lim = plan.cluster.limiter
        if lim is not None:
            try:
                lim.acquire_stream()
            except ProxyError as e:  # Overflow
                self.local_error(e)
                return False
            self.permit = lim
        return True

    def _release(self) -> None:
        if self.permit is not None:
            self.permit.release_stream()
            self.permit = None

    def _abort_stream(self, code: int) -> None:
        """Fault abort with an HTTP/2 error (http2Error): the stream is reset with `code`."""
        self.metrics = self.srv.router.error_metrics(self.head, self.srv.ctx)
        self.metrics.requests += 1
        self.counted = True
        self.status = 0  # no response: a failure
        if self.grpc:
            self.grpc_status = grpc.UNAVAILABLE if code == 7 else grpc.INTERNAL
        self.latency_ms = (time.monotonic() - self.start) * 1000.0
        self.srv.reset(self.sid, code)
        self._complete()

    def _maybe_mirror(self) -> None:
        """A copy of the complete request to the route's mirror (once, with the first try)."""
        route = self.route
        plan = route.plan if route is not None else None
        if self.mirrored or plan is None or plan.mirror is None or self.srv.mirrors is None or \
                not self.req_ended or self.replay is None:
            return
        self.mirrored = True
        self.srv.mirrors.send(self.srv.router, plan.mirror, plan.head, self.scheme, b"".join(self.replay))

    def _may_retry(self) -> bool:
        route = self.route
        plan = route.plan if route is not None else None
        if plan is None or plan.retries >= plan.retry.attempts or self.replay is None or not self.req_ended:
            return False
        count = getattr(self.srv.router, "count_retry", None)
        if not plan.cluster.budget.try_retry(time.monotonic()):
            if count is not None:
                count(plan.authority, "budget")
            return False
        plan.retries += 1
        if count is not None:
            count(plan.authority, "")
        return True

    def _retry(self) -> None:
        self._abandon()
        route = self.route
        assert route is not None and self.replay is not None
        for _, flow in self.req_q:
            self.srv.ack(self.sid, flow)
        self.req_q = deque((c, 0) for c in self.replay)
        self.req_end_sent = False
        if route.plan is not None:
            try:
                route = self.srv.router.endpoint_route(route.plan, self.srv.ctx)
            except ProxyError as e:
                self.local_error(e, failed=True)
                return
        self._go(route)

    def _abandon(self) -> None:
        up, sid = self.up, self.up_sid
        self.up, self.up_sid = None, 0
        if up is not None and sid:
            up.reset(sid, CANCEL)

    def _report(self, status: int) -> None:
        route = self.route
        plan = route.plan if route is not None else None
        if plan is not None and plan.cluster.outlier is not None:
            total = len(plan.target.state.subset(plan.subset))
            plan.cluster.report(plan.addr, status, time.monotonic(), total)

    def _try_over(self) -> None:
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None

    def _on_try_timeout(self) -> None:
        self.try_timer = None
        if self.done or self.resp_started:
            return
        if self._may_retry():
            self._report(504)
            self._retry()
            return
        self._abandon()
        self.local_error(Timeout("timeout"), failed=True)

    def _on_timeout(self) -> None:
        self.timer = None
        if self.done:
            return
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self._abandon()
        if self.resp_started:  # cut short at the deadline
            self.srv.reset(self.sid, CANCEL)
            if self.grpc:
                self.grpc_status = grpc.DEADLINE_EXCEEDED
            self._complete()
            return
        self.local_error(Timeout("timeout"), failed=True)

    # === responses the proxy makes ===

    def local_error(self, err: ProxyError, failed: bool = False) -> None:
        """Answer with a proxy-made error: gRPC requests get a trailers-only response."""
        if self.done:
            return
        self._abandon()
        if self.metrics is None:
            self.metrics = self.srv.router.error_metrics(self.head, self.srv.ctx)
        self.srv.log.debug("h2.request_failed", error=str(err), status=err.status,
                           authority=self.head.host.decode("latin-1"))
        if self.grpc:
            code = grpc.DEADLINE_EXCEEDED if isinstance(err, Timeout) else grpc.from_http(err.status)
            self._send_local(200, grpc.trailers_only(code, str(err)), b"", code)
        else:
            body = (str(err).replace("\n", " ")[:200] + "\n").encode("utf-8", "replace")
            self._send_local(err.status, error_headers(err.status, str(err), len(body)), body, None)

    def _reply(self, reply: Reply) -> None:
        status, headers, body = from_http1(reply.make(False))
        self.metrics = reply.metrics
        if self.grpc and status >= 400:
            msg = next((v.decode("latin-1") for n, v in headers if n == b"meshlet-proxy-error"), str(status))
            code = grpc.from_http(status)
            self._send_local(200, grpc.trailers_only(code, msg), b"", code)
            return
        self._send_local(status, headers, body, None)

    def _send_local(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, gs: int | None) -> None:
        if not self.counted:
            self.counted = True
            self.metrics.requests += 1
        self.status, self.grpc_status = status, gs
        self.latency_ms = (time.monotonic() - self.start) * 1000.0
        self.resp_started = True
        if body:
            self.srv.send_headers(self.sid, headers, False)
            self.resp_q.append((0, body, 0))
            self.resp_q.append((2,))
            self.flush_resp()
        else:
            self.srv.send_headers(self.sid, headers, True)
            self._complete()
            self.srv.flush()

