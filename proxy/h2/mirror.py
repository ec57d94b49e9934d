"""Fire-and-forget mirroring of HTTP/2 requests: a copy of a complete request (body ≤ 64 KiB)
goes as a stream to an endpoint of the mirror backend with `:authority` `<host>-shadow`; its
response is read and dropped. Bounded: beyond `limit` copies in flight, more are dropped."""
from __future__ import annotations

import asyncio
from typing import Any

from ..errors import ProxyError
from ..http1 import RequestHead
from ..mirror import shadow_head
from ..profile import Mirror
from .heads import upstream_headers
from .upstream import H2Pools, H2Upstream


class _Discard:
    """The mirror's stream sink: acknowledges and drops the response."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.up: H2Upstream | None = None
        self.sid = 0

    def up_head(self, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        pass

    def up_data(self, data: bytes, flow: int) -> None:
        if self.up is not None:
            self.up.ack(self.sid, flow)

    def up_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        pass

    def up_end(self) -> None:
        self._done()

    def up_reset(self, code: int, refused: bool) -> None:
        self._done()

    def up_window(self) -> None:
        pass

    def _done(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class H2Mirrors:
    def __init__(self, pools: H2Pools, log: Any, *, limit: int = 64, timeout: float = 10.0) -> None:
        self.pools = pools
        self.log = log
        self.limit = limit
        self.timeout = timeout
        self.inflight = 0
        self.sent = 0
        self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, router: Any, mirror: Mirror, head: RequestHead, scheme: bytes, body: bytes) -> None:
        """Mirror one request (`router.mirror_pool` picks the endpoint); never raises."""
        if self.inflight >= self.limit:
            self.dropped += 1
            return
        try:
            pool = router.mirror_pool(mirror)
            h2pool = self.pools.get(pool) if pool is not None else None
        except Exception as e:  # noqa: BLE001 - a mirror never affects the request
            self.log.debug("mirror.no_endpoint", authority=mirror.backend.authority, error=str(e))
            h2pool = None
        if h2pool is None:
            self.dropped += 1
            return
        self.inflight += 1
        headers = upstream_headers(shadow_head(head), scheme)
        task = asyncio.get_running_loop().create_task(self._send(h2pool, headers, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, pool: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        up: H2Upstream | None = None
        sink: _Discard | None = None
        try:
            up = await pool.acquire()
            sink = _Discard(asyncio.get_running_loop().create_future())
            sink.up = up
            sink.sid = up.open(headers, not body, sink)
            if body:
                if up.conn.local_flow_control_window(sink.sid) < len(body):
                    raise ProxyError("mirror body larger than the send window")
                while body:
                    n = min(len(body), up.conn.max_outbound_frame_size)
                    up.send(sink.sid, body[:n], end=n == len(body))
                    body = body[n:]
                up.flush()
            await asyncio.wait_for(sink.done, self.timeout)
            self.sent += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - mirrors fail quietly
            self.dropped += 1
            self.log.debug("mirror.failed", error=f"{type(e).__name__}: {e}")
            if up is not None and sink is not None and sink.sid:
                up.reset(sink.sid)
        finally:
            self.inflight -= 1

    def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
