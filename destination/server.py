"""The Destination gRPC service: `Get` streams endpoints, `GetProfile` route configuration.

`GetProfile` streams the target's profile at once and a new one whenever a
relevant resource changes; its listener keeps only the latest unsent
profile (profile_watcher.LatestProfile), so it needs no overflow handling.

Each `Get` stream subscribes a `StreamListener` to the watcher. The listener
is synchronous and never blocks: it converts updates to protobuf and
`put_nowait`s them into the stream's bounded queue. When that queue is full
(the client does not keep up) the overflow is counted and the stream ends with
RESOURCE_EXHAUSTED, so the client re-subscribes and gets a fresh snapshot;
nothing grows without bound.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpclib.const
import grpclib.server
import structlog
from grpclib import GRPCError
from grpclib.const import Status
from meshlet.api import destination_pb as pb
from prometheus_client import CollectorRegistry, Counter, Gauge

from .address import AddressSet
from .errors import InvalidPath, StreamOverflow
from .lookup import CallerRef
from .profile_watcher import LatestProfile, ProfileWatcher
from .targets import Target, parse_path
from .translator import add_update, no_endpoints_update, remove_update
from .watcher import EndpointsWatcher

GET_METHOD = "/meshlet.destination.v1.Destination/Get"
DEFAULT_QUEUE_CAPACITY = 100


@dataclass(frozen=True)
class DestinationMetrics:
    streams: Gauge
    overflows: Counter
    invalid: Counter
    profile_streams: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> DestinationMetrics:
        return cls(
            streams=Gauge("destination_get_streams", "Open Get streams", registry=registry),
            overflows=Counter(
                "endpoint_updates_queue_overflow",
                "Get streams ended because the client did not keep up with updates",
                registry=registry,
            ),
            invalid=Counter("destination_invalid_requests", "Requests with a malformed path", registry=registry),
            profile_streams=Gauge("destination_profile_streams", "Open GetProfile streams", registry=registry),
        )


class StreamListener:
    """Watcher listener of one Get stream: translate and enqueue, never block."""

    def __init__(self, capacity: int) -> None:
        self.queue: asyncio.Queue[pb.Update] = asyncio.Queue(maxsize=capacity)
        self.overflowed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<StreamListener queued={self.queue.qsize()}/{self.queue.maxsize} overflowed={self.overflowed.is_set()}>"

    def add(self, addresses: AddressSet) -> None:
        self._put(add_update(addresses))

    def remove(self, addresses: AddressSet) -> None:
        self._put(remove_update(addresses))

    def no_endpoints(self, exists: bool, blocked: bool = False) -> None:
        self._put(no_endpoints_update(exists, blocked))

    def _put(self, update: pb.Update) -> None:
        if self.overflowed.is_set():
            return
        try:
            self.queue.put_nowait(update)
        except asyncio.QueueFull:
            self.overflowed.set()


class DestinationService(pb.DestinationBase):
    def __init__(
        self,
        *,
        watcher: EndpointsWatcher,
        metrics: DestinationMetrics,
        log: structlog.stdlib.BoundLogger,
        queue_capacity: int = DEFAULT_QUEUE_CAPACITY,
        cluster_domain: str = "cluster.local",
        overflow_grace: float = 1.0,
        profiles: ProfileWatcher | None = None,
    ) -> None:
        if queue_capacity < 1:
            raise ValueError(f"stream queue capacity must be at least 1, got {queue_capacity}")
        self._watcher = watcher
        self._profiles = profiles or ProfileWatcher(watcher, log)
        self._metrics = metrics
        self._log = log.bind(component="destination-server")
        self._capacity = queue_capacity
        self._cluster_domain = cluster_domain
        self._overflow_grace = overflow_grace

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        # Get is served by our own handler, which needs the stream itself to end
        # it when the client stops reading (the generated one only sees a generator).
        mapping = super().__mapping__()
        generated = mapping[GET_METHOD]
        mapping[GET_METHOD] = grpclib.const.Handler(
            self._serve_get, generated.cardinality, generated.request_type, generated.reply_type
        )
        return mapping

    def _parse(self, message: pb.GetDestination) -> Target:
        namespace = message.context.namespace if message.context is not None else ""
        try:
            return parse_path(message.path, namespace, cluster_domain=self._cluster_domain)
        except InvalidPath as e:
            self._metrics.invalid.inc()
            self._log.info("get.invalid_path", path=message.path, error=str(e))
            raise GRPCError(Status.INVALID_ARGUMENT, str(e)) from None

    async def _serve_get(self, stream: grpclib.server.Stream[pb.GetDestination, pb.Update]) -> None:
        message = await stream.recv_message()
        if message is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "no GetDestination message received")
        target = self._parse(message)
        caller = _caller(message)
        listener = StreamListener(self._capacity)
        log = self._log.bind(target=str(target), peer=_peer(stream))
        self._watcher.subscribe(target, listener, caller)
        self._metrics.streams.inc()
        log.debug("get.started")
        try:
            await self._pump(stream, listener)
        except StreamOverflow:
            self._metrics.overflows.inc()
            log.warning("get.overflow", capacity=self._capacity)
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED, f"client did not keep up with updates (queue of {self._capacity} full); re-subscribe"
            ) from None
        finally:
            self._watcher.unsubscribe(target, listener, caller)
            self._metrics.streams.dec()
            log.debug("get.ended")

    async def _pump(self, stream: grpclib.server.Stream[pb.GetDestination, pb.Update], listener: StreamListener) -> None:
        """Send queued updates until the queue overflows (then raise StreamOverflow) or the client leaves."""

        async def send_loop() -> None:
            while not listener.overflowed.is_set():
                await stream.send_message(await listener.queue.get())

        sender = asyncio.create_task(send_loop())
        overflow = asyncio.create_task(listener.overflowed.wait())
        try:
            await asyncio.wait({sender, overflow}, return_when=asyncio.FIRST_COMPLETED)
            if not overflow.done():
                sender.result()  # send_loop only ends early by an error: re-raise it
            # Overflowed. Let the message being sent finish so the stream can end
            # cleanly with a status; a client that stays stuck gets RST_STREAM.
            done, _ = await asyncio.wait({sender}, timeout=self._overflow_grace)
            if not done:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
                await stream.cancel()
        finally:
            for task in (sender, overflow):
                task.cancel()
            await asyncio.gather(sender, overflow, return_exceptions=True)
        raise StreamOverflow()

    async def get_profile(self, message: pb.GetDestination) -> AsyncIterator[pb.DestinationProfile]:
        target = self._parse(message)
        listener = LatestProfile()
        self._profiles.subscribe(target, _caller(message), listener, message.path)
        self._metrics.profile_streams.inc()
        self._log.debug("profile.started", target=str(target))
        try:
            while True:
                yield await listener.queue.get()
        finally:
            self._profiles.unsubscribe(listener)
            self._metrics.profile_streams.dec()
            self._log.debug("profile.ended", target=str(target))


def _caller(message: pb.GetDestination) -> CallerRef:
    context = message.context
    if context is None:
        return CallerRef()
    return CallerRef(namespace=context.namespace, pod=context.pod, labels=tuple(sorted(context.labels.items())))


def _peer(stream: object) -> str:
    peer = getattr(stream, "peer", None)
    addr = peer.addr() if peer is not None else None
    return f"{addr[0]}:{addr[1]}" if addr else "?"
