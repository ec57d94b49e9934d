"""`H2Pool` on loopback sockets: one multiplexed connection shared by concurrent streams,
connect failures as ConnectError, a peer's GOAWAY retires the connection."""
from __future__ import annotations

import asyncio

import pytest
from h2_apps import PlainH2
from meshlet.proxy.errors import ConnectError
from meshlet.proxy.h2.upstream import H2Pool


class Sink:
    def __init__(self) -> None:
        self.head: list | None = None
        self.body = b""
        self.done = asyncio.get_running_loop().create_future()
        self.up = None
        self.sid = 0

    def up_head(self, headers, ended) -> None:
        self.head = headers

    def up_data(self, data: bytes, flow: int) -> None:
        self.body += data
        self.up.ack(self.sid, flow)  # type: ignore[attr-defined]

    def up_trailers(self, headers) -> None:
        pass

    def up_end(self) -> None:
        self.done.set_result("end")

    def up_reset(self, code: int, refused: bool) -> None:
        if not self.done.done():
            self.done.set_result(("reset", code, refused))

    def up_window(self) -> None:
        pass


@pytest.fixture
async def server():
    protos: list[PlainH2] = []

    def make() -> PlainH2:
        p = PlainH2("srv")
        protos.append(p)
        return p

    srv = await asyncio.get_running_loop().create_server(make, "127.0.0.1", 0)
    yield srv.sockets[0].getsockname()[1], protos
    srv.close()
    await srv.wait_closed()


async def _get(pool: H2Pool, path: str) -> Sink:
    up = await pool.acquire()
    s = Sink()
    s.up = up
    s.sid = up.open([(b":method", b"GET"), (b":scheme", b"http"), (b":path", path.encode()),
                     (b":authority", b"t")], True, s)
    await asyncio.wait_for(s.done, 10)
    return s


async def test_concurrent_streams_share_one_connection(server) -> None:
    port, protos = server
    pool = H2Pool("127.0.0.1", port, "", "", None, None, 5.0, 60.0)
    sinks = await asyncio.gather(*(_get(pool, f"/{i}") for i in range(20)))
    assert [s.body for s in sinks] == [f"srv /{i} end-user=".encode() for i in range(20)]
    assert len(protos) == 1 and len(pool.conns) == 1
    pool.close()


async def test_connect_refused_is_a_connect_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = H2Pool("127.0.0.1", port, "", "", None, None, 5.0, 60.0)
    with pytest.raises(ConnectError, match="failed"):
        await pool.acquire()
    assert pool._connecting is None


async def test_goaway_retires_the_connection(server) -> None:
    port, protos = server
    pool = H2Pool("127.0.0.1", port, "", "", None, None, 5.0, 60.0)
    await _get(pool, "/a")
    first = pool.conns[0]
    srv = protos[0]
    srv.conn.close_connection()
    srv.transport.write(srv.conn.data_to_send())
    for _ in range(200):
        if first.goaway:
            break
        await asyncio.sleep(0.01)
    assert first.goaway and first not in pool.conns
    s = await _get(pool, "/b")  # a new connection
    assert s.body == b"srv /b end-user=" and len(protos) == 2
    pool.close()


async def test_streams_accepted_before_a_graceful_goaway_still_finish() -> None:
    import h2.config
    import h2.connection
    import h2.events
    from hyperframe.frame import GoAwayFrame

    class GoAwayThenAnswer(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.t = transport
            self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            self.conn.initiate_connection()
            transport.write(self.conn.data_to_send())

        def data_received(self, data: bytes) -> None:
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.StreamEnded):
                    self.t.write(self.conn.data_to_send())
                    self.t.write(GoAwayFrame(0, last_stream_id=ev.stream_id, error_code=0).serialize())
                    self.conn.send_headers(ev.stream_id, [(":status", "200")])
                    self.conn.send_data(ev.stream_id, b"late", end_stream=True)
            self.t.write(self.conn.data_to_send())

    srv = await asyncio.get_running_loop().create_server(GoAwayThenAnswer, "127.0.0.1", 0)
    try:
        pool = H2Pool("127.0.0.1", srv.sockets[0].getsockname()[1], "", "", None, None, 5.0, 60.0)
        s = await _get(pool, "/x")
        assert s.body == b"late" and s.up.goaway and not pool.conns  # type: ignore[attr-defined]
    finally:
        srv.close()
        await srv.wait_closed()
