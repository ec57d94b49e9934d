"""Fire-and-forget request mirroring: a copy goes to the mirror backend with the authority
`<host>-shadow`; its response is read and discarded. Bounded: beyond `limit` copies in
flight, more are dropped (counted), never queued."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .client import Pool, Upstream
from .http1 import RequestHead, ResponseHead
from .profile import Mirror


def shadow_host(host: bytes) -> bytes:
    """"reviews:9080" → "reviews-shadow:9080" (Envoy's shadow host)."""
    name, sep, port = host.rpartition(b":")
    if sep and port.isdigit() and name and not name.endswith(b"]"):
        return name + b"-shadow:" + port
    return host + b"-shadow"


def shadow_head(head: RequestHead) -> RequestHead:
    host = shadow_host(head.host)
    headers = [(n, host if n.lower() == b"host" else v) for n, v in head.headers]
    return replace(head, headers=headers, host=host)


class _Discard:
    """The mirror's upstream sink: reads the response to its end and drops it."""

    def __init__(self, pool: Pool, done: asyncio.Future[None]) -> None:
        self.pool = pool
        self.done = done

    def up_head(self, up: Upstream, head: ResponseHead) -> bytes:
        return b""

    def up_data(self, up: Upstream, raw: bytes) -> None:
        pass

    def up_end(self, up: Upstream, leftover: bytes) -> None:
        if leftover or not up.framer.keep_alive:
            up.close()
        else:
            self.pool.release(up)
        if not self.done.done():
            self.done.set_result(None)

    def up_upgraded(self, up: Upstream) -> None:
        self.up_error(up, RuntimeError("upgrade"))

    def up_error(self, up: Upstream, err: Exception) -> None:
        up.close()
        if not self.done.done():
            self.done.set_result(None)

    def up_pause(self, paused: bool) -> None:
        pass


class Mirrors:
    def __init__(self, pick: Callable[[Mirror], Pool | None], log: Any, *, limit: int = 64,
                 timeout: float = 10.0) -> None:
        self.pick = pick
        """The pool of an endpoint of the mirror backend (None: nowhere to send now)."""
        self.log = log.bind(component="mirror")
        self.limit = limit
        self.timeout = timeout
        self.inflight = 0
        self.sent = 0
        self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, mirror: Mirror, head: RequestHead, body: bytes) -> None:
        if self.inflight >= self.limit:
            self.dropped += 1
            return
        try:
            pool = self.pick(mirror)
        except Exception as e:  # noqa: BLE001 - a mirror never affects the request
            self.log.debug("mirror.no_endpoint", authority=mirror.backend.authority, error=str(e))
            pool = None
        if pool is None:
            self.dropped += 1
            return
        self.inflight += 1
        data = shadow_head(head).serialize() + body
        task = asyncio.get_running_loop().create_task(self._send(pool, data, head.method == b"HEAD"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, pool: Pool, data: bytes, head_request: bool) -> None:
        up = None
        try:
            up = pool.take_idle() or await pool.connect()
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            up.sink = _Discard(pool, done)  # type: ignore[assignment]
            up.framer.start(head_request=head_request)
            up.write(data)
            await asyncio.wait_for(done, self.timeout)
            self.sent += 1
        except asyncio.CancelledError:
            if up is not None:
                up.close()
            raise
        except Exception as e:  # noqa: BLE001 - fire and forget
            self.dropped += 1
            if up is not None:
                up.close()
            self.log.debug("mirror.failed", error=f"{type(e).__name__}: {e}")
        finally:
            self.inflight -= 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
