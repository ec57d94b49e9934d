"""The route-policy flow of the HTTP server (retries, budget, timeouts, pool permits) with
in-memory transports (no sockets)."""
from __future__ import annotations

import asyncio
import random


from meshlet.controller.log import setup
from meshlet.proxy.balance import P2C
from meshlet.proxy.client import Pool
from meshlet.proxy.cluster import Cluster
from meshlet.proxy.endpoints import EndpointState
from meshlet.proxy.exchange import ConnCtx, Plan, Route
from meshlet.proxy.metrics import ProxyMetrics
from meshlet.proxy.profile import Budget, Retry, TrafficPolicy
from meshlet.proxy.server import HttpServer
from test_server_unit import FakeConnector, FakeTransport

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
GET = b"GET /x HTTP/1.1\r\nHost: web\r\n\r\n"


class _Target:
    path = "web:80"
    state = EndpointState()


class PlanRouter:
    def __init__(self, pool: Pool, metrics: ProxyMetrics, retry: Retry, *, timeout: float = 0.0,
                 budget: Budget = Budget(), policy: TrafficPolicy = TrafficPolicy()) -> None:
        self.pool, self.metrics, self.retry, self.timeout = pool, metrics, retry, timeout
        self.cluster = Cluster(policy, budget, P2C(), random.Random(1), 0.0)
        self.counted: list[str] = []
        self.mirrors = None

    def _route(self, plan: Plan) -> Route:
        return Route(self.pool, self.metrics.route(self.metrics.base("outbound", authority="web:80")), None, plan)

    def route_now(self, head, ctx):  # noqa: ANN001, ANN201
        plan = Plan(None, head, self.cluster, _Target(), (), "web:80", self.retry)
        plan.timeout = self.timeout
        return self._route(plan)

    async def route(self, head, ctx):  # noqa: ANN001, ANN201
        return self.route_now(head, ctx)

    def endpoint_route(self, plan: Plan, ctx: ConnCtx) -> Route:
        return self._route(plan)

    def count_retry(self, authority: str, what: str) -> None:
        self.counted.append(what or "retry")

    def error_metrics(self, head, ctx):  # noqa: ANN001, ANN201
        return self.metrics.route(self.metrics.base("outbound", authority="web:80"))


def make(retry: Retry, **kw: object):  # noqa: ANN201
    metrics = ProxyMetrics("demo", "web")
    connector = FakeConnector()
    pool = Pool("10.0.0.1", 80, "", "", connector, None)  # type: ignore[arg-type]
    router = PlanRouter(pool, metrics, retry, **kw)  # type: ignore[arg-type]
    down = FakeTransport()
    server = HttpServer(router, ConnCtx("outbound", "10.0.0.1", 80), None, set(), setup("test"))  # type: ignore
    server.attach(down, b"")  # type: ignore[arg-type]
    return server, down, connector, router


async def until(cond, what: str) -> None:  # noqa: ANN001
    for _ in range(200):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(what)


async def test_a_retried_status_keeps_its_connection_for_the_retry() -> None:
    server, down, connector, router = make(Retry(attempts=2, on_5xx=True))
    server.data_received(GET)
    await until(lambda: len(connector.connections) == 1, "first try")
    t1, up1 = connector.connections[0]
    up1.data_received(BUSY)
    assert not t1.closed and down.data() == b""  # the 503 is dropped, its connection goes back to the pool
    await until(lambda: t1.data() == GET + GET, "the retry on the same connection")
    up1.data_received(OK)
    assert down.data() == OK and router.counted == ["retry"] and len(connector.connections) == 1


async def test_a_retried_status_whose_body_comes_later_is_read_to_its_end_first() -> None:
    server, down, connector, router = make(Retry(attempts=2, on_5xx=True))
    server.data_received(GET)
    await until(lambda: len(connector.connections) == 1, "first try")
    t1, up1 = connector.connections[0]
    up1.data_received(BUSY[:-3])  # the head and one body byte
    assert not t1.closed and down.data() == b""
    await until(lambda: len(connector.connections) == 2, "the retry on a new connection (the first is busy)")
    up1.data_received(BUSY[-3:])  # the rest: the first connection is idle again
    t2, up2 = connector.connections[1]
    up2.data_received(OK)
    assert down.data() == OK and not t1.closed and up1 in server.router.pool.idle


async def test_a_retried_status_that_closes_its_connection_is_retried_on_a_fresh_one() -> None:
    server, down, connector, router = make(Retry(attempts=2, on_5xx=True))
    server.data_received(GET)
    await until(lambda: len(connector.connections) == 1, "first try")
    t1, up1 = connector.connections[0]
    up1.data_received(BUSY.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert t1.closed and down.data() == b""
    await until(lambda: len(connector.connections) == 2, "second try")
    t2, up2 = connector.connections[1]
    assert t2.data() == t1.data() == GET
    up2.data_received(OK)
    assert down.data() == OK and router.counted == ["retry"]


async def test_a_reset_is_retried_and_the_last_answer_wins_when_attempts_run_out() -> None:
    server, down, connector, router = make(Retry(attempts=1, on_5xx=True, on_reset=True))
    server.data_received(GET)
    await until(lambda: len(connector.connections) == 1, "first try")
    connector.connections[0][1].connection_lost(ConnectionResetError())
    await until(lambda: len(connector.connections) == 2, "second try")
    connector.connections[1][1].data_received(BUSY)
    assert down.data() == BUSY  # no attempts left: forwarded as is


async def test_no_budget_no_retry() -> None:
    server, down, connector, router = make(Retry(attempts=3, on_5xx=True), budget=Budget(0.0, 0, 10.0))
    server.data_received(GET)
    await until(lambda: len(connector.connections) == 1, "first try")
    connector.connections[0][1].data_received(BUSY)
    assert down.data() == BUSY and router.counted == ["budget"]


async def test_route_timeout_answers_504_and_drops_the_upstream() -> None:
    server, down, connector, router = make(Retry(), timeout=0.05)
    server.data_received(GET)
    await until(lambda: down.data().startswith(b"HTTP/1.1 504 "), "the 504")
    assert b"meshlet-proxy-error: timeout" in down.data()
    assert connector.connections[0][0].closed and not down.closed
    server.data_received(GET)  # the client's connection keeps serving
    await until(lambda: len(connector.connections) == 2, "next request")
    connector.connections[1][1].data_received(OK)
    assert down.data().endswith(OK)


async def test_pool_permit_is_held_per_request_and_overflow_is_503() -> None:
    server, down, connector, router = make(Retry(), policy=TrafficPolicy(max_connections=1, max_pending=1))
    lim = router.cluster.limiter
    server.data_received(GET)
    await until(lambda: len(connector.connections) == 1, "first try")
    assert lim.active == 1
    connector.connections[0][1].data_received(OK)
    assert lim.active == 0 and down.data() == OK
    # a second server on the same cluster: one in flight, one waiting, the third overflows
    others = []
    for _ in range(3):
        down2 = FakeTransport()
        s2 = HttpServer(router, ConnCtx("outbound", "10.0.0.1", 80), None, set(), setup("test"))  # type: ignore
        s2.attach(down2, b"")  # type: ignore[arg-type]
        s2.data_received(GET)
        others.append(down2)
    await until(lambda: others[2].data().startswith(b"HTTP/1.1 503 "), "overflow")
    assert b"meshlet-proxy-error: overflow" in others[2].data()
    assert lim.active == 1 and len(lim.waiters) == 1


async def test_max_requests_per_connection_closes_a_spent_connection() -> None:
    server, down, connector, router = make(Retry(), policy=TrafficPolicy(max_requests_per_connection=2))
    for n in (1, 2, 3):
        server.data_received(GET)
        await until(lambda: down.data().count(b"HTTP/1.1 200") == n - 1 and connector.connections
                    and not connector.connections[-1][0].closed and connector.connections[-1][0].data().count(b"GET")
                    >= (1 if n == 3 else n), f"request {n} sent")
        connector.connections[-1][1].data_received(OK)
    # two requests on the first connection, which then closed; the third on a new one
    assert [t.data().count(b"GET /x") for t, _ in connector.connections] == [2, 1]
    assert connector.connections[0][0].closed


async def test_a_reply_to_head_has_no_body() -> None:
    from functools import partial

    from meshlet.proxy import routes as R
    from meshlet.proxy.exchange import Reply

    metrics = ProxyMetrics("demo", "web")

    class ReplyRouter:
        def route_now(self, head, ctx):  # noqa: ANN001, ANN201
            return Reply(418, partial(R.abort, 418), metrics.route(metrics.base("outbound")))

    down = FakeTransport()
    server = HttpServer(ReplyRouter(), ConnCtx("outbound", "10.0.0.1", 80), None, set(), setup("test"))  # type: ignore
    server.attach(down, b"")  # type: ignore[arg-type]
    server.data_received(b"HEAD / HTTP/1.1\r\nHost: web\r\n\r\nGET / HTTP/1.1\r\nHost: web\r\n\r\n")
    first, _, rest = down.data().partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 418 ") and rest.startswith(b"HTTP/1.1 418 ")
    assert rest.endswith(b"fault filter abort\n")


async def test_a_retried_status_with_a_large_or_chunked_body_closes_its_connection() -> None:
    big = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 100
    chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n"
    for first in (big, chunked):
        server, down, connector, router = make(Retry(attempts=2, on_5xx=True))
        server.data_received(GET)
        await until(lambda: len(connector.connections) == 1, "first try")
        t1, up1 = connector.connections[0]
        up1.data_received(first)
        assert t1.closed  # not worth reading to its end
        await until(lambda: len(connector.connections) == 2, "second try")
        connector.connections[1][1].data_received(OK)
        assert down.data() == OK


class _Dropper:
    """A sink that drops the response at its head, as a retry does."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.drained: bool | None = None

    def up_head(self, up, head):  # noqa: ANN001, ANN201
        self.drained = up.drain(self.timeout)
        if not self.drained:
            up.close()
        return b""


async def test_drain_pools_the_connection_at_the_end_or_closes_it_after_the_timeout() -> None:
    from meshlet.proxy.client import Upstream
    from test_server_unit import FakeTransport

    pool = Pool("10.0.0.1", 80, "", "", None, None)  # type: ignore[arg-type]
    for rest, timeout, pooled in ((BUSY[-3:], 5.0, True), (b"", 0.05, False)):
        up, t = Upstream(None, pool), FakeTransport()
        up.connection_made(t)  # type: ignore[arg-type]
        up.framer.start(head_request=False)
        up.sink = sink = _Dropper(timeout)  # type: ignore[assignment]
        up.data_received(BUSY[:-3])
        assert sink.drained and not t.closed
        up.data_received(rest)
        await until(lambda: (up in pool.idle) if pooled else t.closed, "pooled" if pooled else "closed")
        assert t.closed is not pooled
