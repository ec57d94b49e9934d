"""The proxy's client side of the destination API, shared by discovery (`resolve.py`) and routes (`profiles.py`).

- `DestinationClient`: the gRPC channel to destination, one per proxy: every `Get`
  and `GetProfile` stream of the proxy rides on it. A channel carries at most
  `STREAMS_PER_CHANNEL` streams (destination's HTTP/2 server allows 100 at once; a
  stream past that would wait for another to end), so a proxy following more
  targets than that opens a further channel, closed again once its streams end.
  A connection error (OSError) closes the channel it happened on; the next stream
  opens a new one.
- `ReconnectingStream`: one server stream kept open: re-opened after an end or an
  error with exponential backoff (0.1 s doubling to 10 s, jittered ×0.5..1.5; reset
  by a message), longer (5 s) when the server does not implement the call. The
  caller keeps what the stream last said while it is down.
- `StreamTarget` + `TargetCache`: the per-target record (answered event, task,
  connected flag) and the LRU of targets, at most `max_targets`, each with one
  watching task, cancelled when evicted or closed.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

STREAMS_PER_CHANNEL = 90
"""Below destination's 100 concurrent streams per HTTP/2 connection."""
INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 10.0
UNIMPLEMENTED_BACKOFF = 5.0


class _Lane:
    __slots__ = ("channel", "streams")

    def __init__(self) -> None:
        self.channel: Any = None
        self.streams = 0


@dataclass(frozen=True)
class Lease:
    """A stream's place on a channel: its stub, and what to report back when the stream ends or fails."""

    stub: Any
    channel: Any
    lane: _Lane


class DestinationClient:
    """The channel(s) to destination at `addr` (None: no control plane) and the caller context sent on streams."""

    def __init__(self, addr: tuple[str, int] | None, *, namespace: str = "", pod: str = "",
                 service_account: str = "", labels: dict[str, str] | None = None) -> None:
        self.addr = addr
        self.namespace, self.pod, self.service_account = namespace, pod, service_account
        self.labels = dict(labels or {})
        self._lanes: list[_Lane] = [_Lane()]
        self.closed = False

    @classmethod
    def from_config(cls, cfg: Any) -> DestinationClient:
        return cls(cfg.destination_addr, namespace=cfg.namespace, pod=cfg.pod,
                   service_account=cfg.service_account, labels=dict(cfg.pod_labels))

    @property
    def enabled(self) -> bool:
        return self.addr is not None and not self.closed

    @property
    def channels(self) -> int:
        return sum(1 for lane in self._lanes if lane.channel is not None)

    def request(self, path: str, *, with_labels: bool) -> Any:
        """A `GetDestination` for `path` with this proxy's caller context (its pod labels if asked)."""
        from meshlet.api import destination_pb

        return destination_pb.GetDestination(path=path, context=destination_pb.CallerContext(
            namespace=self.namespace, pod=self.pod, service_account=self.service_account,
            labels=dict(self.labels) if with_labels else {}))

    def lease(self) -> Lease:
        """A stub for one stream, on the first channel with room (opened when needed)."""
        from grpclib.client import Channel
        from meshlet.api import destination_pb

        if self.addr is None or self.closed:
            raise RuntimeError("no destination to talk to")
        lane = next((lane for lane in self._lanes if lane.streams < STREAMS_PER_CHANNEL), None)
        if lane is None:
            lane = _Lane()
            self._lanes.append(lane)
        if lane.channel is None:
            lane.channel = Channel(*self.addr)
        lane.streams += 1
        return Lease(destination_pb.DestinationStub(lane.channel), lane.channel, lane)

    def release(self, lease: Lease, *, broken: bool = False) -> None:
        """The stream of `lease` ended; `broken`: its connection failed, so its channel is closed (once)."""
        lane = lease.lane
        lane.streams = max(0, lane.streams - 1)
        if broken and lane.channel is lease.channel and lane.channel is not None:
            lane.channel.close()
            lane.channel = None
        if lane.streams == 0 and lane is not self._lanes[0] and lane in self._lanes:
            if lane.channel is not None:
                lane.channel.close()
            self._lanes.remove(lane)

    def close(self) -> None:
        self.closed = True
        for lane in self._lanes:
            if lane.channel is not None:
                lane.channel.close()
                lane.channel = None


class ReconnectingStream:
    """Keeps one server stream open: `run(on_message, on_down)` until cancelled.

    `open(stub)` starts the stream; `on_message(msg, first)` gets each message (`first`: the
    first of this stream, a snapshot) and returns whether it counted (an empty message does
    not); `on_down(failures)` runs after each end or failure, before the backoff.
    """

    def __init__(self, client: DestinationClient, open: Callable[[Any], AsyncIterator[Any]], log: Any, *,
                 event: str, path: str, unimplemented_backoff: float | None = UNIMPLEMENTED_BACKOFF) -> None:
        self.client, self._open, self._log = client, open, log
        self.event, self.path = event, path
        self.unimplemented_backoff = unimplemented_backoff
        self.connected = False
        self.failures = 0

    async def run(self, on_message: Callable[[Any, bool], bool], on_down: Callable[[int], None]) -> None:
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError

        backoff = INITIAL_BACKOFF
        while True:
            lease = self.client.lease()
            broken = False
            try:
                first = True
                async for msg in self._open(lease.stub):
                    if on_message(msg, first):
                        self.connected = True
                        backoff = INITIAL_BACKOFF
                        first = False
                error = "stream ended"
            except asyncio.CancelledError:
                raise
            except GRPCError as e:
                error = f"{e.status.name}: {e.message}"
                if e.status is Status.UNIMPLEMENTED and self.unimplemented_backoff is not None:
                    backoff = max(backoff, self.unimplemented_backoff)  # a control plane without it: later
            except Exception as e:  # noqa: BLE001 - the control plane may be down: retry, keep the last value
                error = f"{type(e).__name__}: {e}"
                broken = isinstance(e, OSError)
            finally:
                self.client.release(lease, broken=broken)
            self.connected = False
            self.failures += 1
            on_down(self.failures)
            delay = backoff * (0.5 + random.random())
            self._log.debug(f"{self.event}.retry", path=self.path, error=error, retry_in=round(delay, 3))
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, MAX_BACKOFF)


class StreamTarget:
    """One target followed by a stream: answered once it said something (or gave up), its task, its state."""

    __slots__ = ("answered", "connected", "last_used", "path", "task")

    def __init__(self, path: str) -> None:
        self.path = path
        self.answered = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.connected = False
        self.last_used = time.monotonic()

    async def wait(self, timeout: float) -> bool:
        if self.answered.is_set():
            return True
        try:
            await asyncio.wait_for(self.answered.wait(), timeout)
        except TimeoutError:
            return False
        return True


T = TypeVar("T", bound=StreamTarget)


class TargetCache(Generic[T]):
    """Targets by path, least recently used first out past `max_targets`; subclasses say how to follow one."""

    task_name = "target"

    def __init__(self, client: DestinationClient, max_targets: int) -> None:
        self.client = client
        self.max_targets = max_targets
        self._targets: OrderedDict[str, T] = OrderedDict()
        self._closed = False

    def new_target(self, path: str) -> T:
        raise NotImplementedError

    def offline(self, t: T) -> None:
        """No control plane: settle `t` at once."""
        t.answered.set()

    async def follow(self, t: T) -> None:
        raise NotImplementedError

    def get(self, path: str) -> T:
        t = self._targets.get(path)
        if t is not None:
            t.last_used = time.monotonic()
            self._targets.move_to_end(path)
            return t
        t = self._targets[path] = self.new_target(path)
        if not self.client.enabled or self._closed:
            self.offline(t)
        else:
            t.task = asyncio.get_running_loop().create_task(self.follow(t), name=f"{self.task_name} {path}")
        while len(self._targets) > self.max_targets:
            _, old = self._targets.popitem(last=False)
            if old.task is not None:
                old.task.cancel()
        return t

    def items(self) -> list[tuple[str, T]]:
        return list(self._targets.items())

    async def close(self) -> None:
        self._closed = True
        tasks = [t.task for t in self._targets.values() if t.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
