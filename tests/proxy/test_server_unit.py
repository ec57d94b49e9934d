"""HttpServer + Upstream + Pool driven with in-memory transports (no sockets)."""
from __future__ import annotations

import asyncio

import pytest

from meshlet.controller.log import setup
from meshlet.proxy.client import Pool
from meshlet.proxy.errors import ConnectError, NoEndpoints
from meshlet.proxy.metrics import ProxyMetrics
from meshlet.proxy.exchange import ConnCtx, Route
from meshlet.proxy.server import HttpServer

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.reading = True
        self.protocol = None

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written.append(data)

    def data(self) -> bytes:
        return b"".join(self.written)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_protocol(self, p) -> None:  # noqa: ANN001
        self.protocol = p

    def get_extra_info(self, name: str):  # noqa: ANN201
        return None


class FakeConnector:
    def __init__(self) -> None:
        self.fail: Exception | None = None
        self.connections: list[tuple[FakeTransport, object]] = []

    async def connect(self, ip, port, identity, server_name, protocol, **kw):  # noqa: ANN001, ANN003, ANN201
        if self.fail is not None:
            raise self.fail
        t = FakeTransport()
        protocol.connection_made(t)
        self.connections.append((t, protocol))
        return t


class FakeRouter:
    def __init__(self, pool: Pool, metrics: ProxyMetrics) -> None:
        self.pool = pool
        self.metrics = metrics
        self.error: Exception | None = None

    def route_now(self, head, ctx):  # noqa: ANN001, ANN201
        if self.error is not None:
            raise self.error
        return Route(self.pool, self.metrics.route(self.metrics.base("outbound", authority="web:80")))

    async def route(self, head, ctx):  # noqa: ANN001, ANN201
        return self.route_now(head, ctx)

    def error_metrics(self, head, ctx):  # noqa: ANN001, ANN201
        return self.metrics.route(self.metrics.base("outbound", authority="web:80"))


@pytest.fixture
def proxy():  # noqa: ANN201
    metrics = ProxyMetrics("demo", "web")
    connector = FakeConnector()
    pool = Pool("10.0.0.1", 80, "", "", connector, metrics.tcp(metrics.base("outbound") + ("dst",)))  # type: ignore
    router = FakeRouter(pool, metrics)
    down = FakeTransport()
    server = HttpServer(router, ConnCtx("outbound", "10.0.0.1", 80), None, set(), setup("test"))  # type: ignore
    server.attach(down, b"")  # type: ignore[arg-type]
    return server, down, connector, router, pool


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_pipelined_requests_are_answered_in_order(proxy) -> None:  # noqa: ANN001
    server, down, connector, _, pool = proxy
    server.data_received(b"GET /1 HTTP/1.1\r\nHost: web\r\n\r\nGET /2 HTTP/1.1\r\nHost: web\r\n\r\n")
    assert not down.reading  # the second request waits
    await settle()
    (up_t, up), = connector.connections
    assert up_t.data().startswith(b"GET /1 HTTP/1.1\r\nHost: web\r\n\r\n")
    assert b"/2" not in up_t.data()
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
    # the second request reuses the same (now idle) upstream connection
    assert up_t.data().endswith(b"GET /2 HTTP/1.1\r\nHost: web\r\n\r\n")
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2")
    assert down.data() == b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"
    assert down.reading and not down.closed
    assert pool.idle == [up]


async def test_connect_failure_is_502_and_connection_stays(proxy) -> None:  # noqa: ANN001
    server, down, connector, _, _ = proxy
    connector.fail = ConnectError("connect to 10.0.0.1:80 failed: Connection refused")
    server.data_received(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
    await settle()
    head = down.data().split(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 502 Bad Gateway")
    assert b"meshlet-proxy-error: connect to 10.0.0.1:80 failed" in head
    assert not down.closed
    rm = server.router.error_metrics(None, None)
    assert rm.by_status[502].count == 1


async def test_no_endpoints_is_503(proxy) -> None:  # noqa: ANN001
    server, down, _, router, _ = proxy
    router.error = NoEndpoints("service web:80 has no ready endpoints")
    server.data_received(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
    assert down.data().startswith(b"HTTP/1.1 503 Service Unavailable")
    assert b"meshlet-proxy-error: service web:80 has no ready endpoints" in down.data()


async def test_stale_pooled_connection_is_retried_once(proxy) -> None:  # noqa: ANN001
    server, down, connector, _, pool = proxy
    server.data_received(b"GET /1 HTTP/1.1\r\nHost: web\r\n\r\n")
    await settle()
    (t1, up1), = connector.connections
    up1.data_received(OK)
    assert pool.idle == [up1]
    server.data_received(b"GET /2 HTTP/1.1\r\nHost: web\r\n\r\n")
    up1.connection_lost(None)  # the server had closed the idle connection
    await settle()
    assert len(connector.connections) == 2
    t2, up2 = connector.connections[1]
    assert t2.data() == b"GET /2 HTTP/1.1\r\nHost: web\r\n\r\n"
    up2.data_received(OK)
    assert down.data() == OK + OK


async def test_malformed_request_is_400_and_closes(proxy) -> None:  # noqa: ANN001
    server, down, _, _, _ = proxy
    server.data_received(b"GET / HTTP/1.1\r\nNo Colon Here\r\n\r\n")
    assert down.data().startswith(b"HTTP/1.1 400 Bad Request")
    assert b"connection: close" in down.data()
    assert down.closed


async def test_response_with_connection_close_closes_the_client(proxy) -> None:  # noqa: ANN001
    server, down, connector, _, pool = proxy
    server.data_received(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
    await settle()
    (_, up), = connector.connections
    up.data_received(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert down.closed
    assert pool.idle == []  # not reused


async def test_close_delimited_response(proxy) -> None:  # noqa: ANN001
    server, down, connector, _, _ = proxy
    server.data_received(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
    await settle()
    (_, up), = connector.connections
    up.data_received(b"HTTP/1.0 200 OK\r\n\r\nbody")
    up.eof_received()
    assert down.data() == b"HTTP/1.0 200 OK\r\n\r\nbody"
    assert down.closed


async def test_upstream_reading_resumes_after_backpressure(proxy) -> None:  # noqa: ANN001
    server, down, connector, _, pool = proxy
    server.data_received(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
    await settle()
    (up_t, up), = connector.connections
    server.pause_writing()  # the client reads slowly
    assert not up_t.reading
    up.data_received(OK)
    # released to the pool: must not stay paused (a paused idle connection never answers again)
    assert pool.idle == [up] and up_t.reading
    server.resume_writing()
    server.data_received(b"GET /2 HTTP/1.1\r\nHost: web\r\n\r\n")
    assert up_t.reading


async def test_chunked_request_body_is_streamed(proxy) -> None:  # noqa: ANN001
    server, down, connector, _, _ = proxy
    server.data_received(b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    await settle()
    (up_t, up), = connector.connections
    server.data_received(b"2\r\nde\r\n0\r\n\r\n")
    assert up_t.data() == (b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    up.data_received(OK)
    assert down.data() == OK


async def test_client_gone_closes_upstream(proxy) -> None:  # noqa: ANN001
    server, down, connector, _, pool = proxy
    server.data_received(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
    await settle()
    (up_t, _), = connector.connections
    server.connection_lost(None)
    assert up_t.closed and pool.idle == []


async def test_garbage_after_a_valid_request_gets_400_after_its_response(proxy) -> None:  # noqa: ANN001
    server, down, connector, _, _ = proxy
    server.data_received(b"GET / HTTP/1.1\r\nHost: web\r\n\r\nGET / HTTP/1.1\r\nBad Line\r\n\r\n")
    await settle()
    (_, up), = connector.connections
    assert not down.written
    up.data_received(OK)
    out = down.data()
    assert out.startswith(OK + b"HTTP/1.1 400 Bad Request")
    assert down.closed


async def test_upgrade_refused_closes_both_sides(proxy) -> None:  # noqa: ANN001
    server, down, connector, _, pool = proxy
    server.data_received(b"GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    await settle()
    (up_t, up), = connector.connections
    up.data_received(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    assert down.data() == b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    assert down.closed and up_t.closed and pool.idle == []


async def test_upgrade_accepted_splices_bytes(proxy) -> None:  # noqa: ANN001
    server, down, connector, _, _ = proxy
    server.data_received(b"GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nearly")
    await settle()
    (up_t, up), = connector.connections
    assert up_t.data().endswith(b"\r\n\r\nearly")
    up.data_received(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nhello")
    assert down.data().endswith(b"\r\n\r\nhello")
    down.protocol.data_received(b"from client")  # the splice now owns the transports
    assert up_t.data().endswith(b"from client")
    up_t.protocol.data_received(b"from server")
    assert down.data().endswith(b"from server")


async def test_client_connection_close_is_hop_by_hop(proxy) -> None:  # noqa: ANN001
    server, down, connector, _, pool = proxy
    server.data_received(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
    await settle()
    (up_t, up), = connector.connections
    assert up_t.data() == b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"  # not forwarded
    up.data_received(OK)
    # the client's connection closes, and the response says so
    assert down.data() == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\nok" and down.closed
    assert pool.idle == [up]  # the proxy's own stays pooled


def test_debug_logging_is_detected_once_per_connection() -> None:
    import structlog

    from meshlet.proxy.server import _debug_enabled

    def logger(level: int):  # noqa: ANN202
        return structlog.make_filtering_bound_logger(level)(structlog.PrintLogger(), [], {})

    assert not _debug_enabled(logger(20))
    assert _debug_enabled(logger(10))
    assert _debug_enabled(object())  # unknown loggers: assume it logs
