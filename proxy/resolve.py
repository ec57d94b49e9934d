"""Service discovery: one `Destination.Get` stream per target, cached.

A target's `EndpointState` is kept up to date by its stream; when the stream
fails it is re-opened with exponential backoff and jitter while the last
known endpoints keep serving. Without a control plane every target passes
through to its original destination.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from typing import Any

from .config import ProxyConfig
from .endpoints import Add, Endpoint, EndpointState, Kind, NoEndpointsUpdate, Remove, Update, labels_of
from .metrics import ProxyMetrics


def normalize_authority(host: bytes | str, default_port: int) -> str:
    """`Host` header → "name:port" (lower case, the original port when absent)."""
    h = host.decode("latin-1") if isinstance(host, bytes) else host
    h = h.strip().lower()
    if not h:
        return ""
    if h.startswith("["):  # IPv6 literal
        end = h.find("]")
        return h if end >= 0 and h[end + 1:end + 2] == ":" else f"{h}:{default_port}"
    name, sep, port = h.rpartition(":")
    if sep and port.isdigit() and name:
        return h
    return f"{h}:{default_port}"


def from_proto(msg: Any) -> Update | None:
    """A `destination_pb.Update` as a domain update (None for an empty message)."""
    import betterproto2

    field, value = betterproto2.which_one_of(msg, "update")
    if field == "add":
        eps = []
        for wa in value.addrs:
            if wa.addr is None or not wa.addr.ip or not 0 < wa.addr.port < 65536:
                continue
            tls = wa.tls_identity
            eps.append(Endpoint(
                ip=wa.addr.ip, port=wa.addr.port, weight=wa.weight or 1,
                identity=tls.uri if tls is not None else "", server_name=tls.server_name if tls is not None else "",
                labels=labels_of(wa.metric_labels.items()), hint=wa.protocol_hint.name or "",
                pod_labels=labels_of(wa.labels.items()),
            ))
        return Add(tuple(eps), labels_of(value.metric_labels.items()))
    if field == "remove":
        return Remove(tuple((a.ip, a.port) for a in value.addrs))
    if field == "no_endpoints":
        return NoEndpointsUpdate(value.exists, bool(value.blocked))
    return None


class Target:
    """One discovery target, e.g. "web.default.svc.cluster.local:8080" or "198.19.0.4:80"."""

    __slots__ = ("path", "state", "answered", "last_used", "task", "connected")

    def __init__(self, path: str) -> None:
        self.path = path
        self.state = EndpointState()
        self.answered = asyncio.Event()
        self.last_used = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.connected = False

    async def wait(self, timeout: float) -> bool:
        if self.answered.is_set():
            return True
        try:
            await asyncio.wait_for(self.answered.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


class Resolver:
    def __init__(self, cfg: ProxyConfig, metrics: ProxyMetrics, log: Any) -> None:
        self.cfg = cfg
        self._metrics = metrics
        self._log = log.bind(component="resolver")
        self._targets: OrderedDict[str, Target] = OrderedDict()
        self._channel: Any = None
        self._closed = False

    def get(self, path: str) -> Target:
        t = self._targets.get(path)
        if t is not None:
            t.last_used = time.monotonic()
            self._targets.move_to_end(path)
            return t
        t = self._targets[path] = Target(path)
        if self.cfg.destination_addr is None or self._closed:
            t.state.apply(NoEndpointsUpdate(exists=False), time.monotonic())
            t.answered.set()
        else:
            t.task = asyncio.get_running_loop().create_task(self._watch(t), name=f"resolve {path}")
        while len(self._targets) > self.cfg.max_targets:
            _, old = self._targets.popitem(last=False)
            if old.task is not None:
                old.task.cancel()
        return t

    def snapshot(self) -> dict[str, object]:
        return {path: {**t.state.snapshot(), "stream_connected": t.connected}
                for path, t in self._targets.items()}

    async def close(self) -> None:
        self._closed = True
        tasks = [t.task for t in self._targets.values() if t.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._channel is not None:
            self._channel.close()

    def _stub(self) -> Any:
        from grpclib.client import Channel

        from meshlet.api import destination_pb

        if self._channel is None:
            host, port = self.cfg.destination_addr  # type: ignore[misc]
            self._channel = Channel(host, port)
        return destination_pb.DestinationStub(self._channel)

    async def _watch(self, t: Target) -> None:
        from meshlet.api import destination_pb

        cfg = self.cfg
        request = destination_pb.GetDestination(path=t.path, context=destination_pb.CallerContext(
            namespace=cfg.namespace, pod=cfg.pod, service_account=cfg.service_account))
        backoff = 0.1
        attempt = 0
        while True:
            try:
                snapshot = True
                async for msg in self._stub().get(request):
                    update = from_proto(msg)
                    if update is None:
                        continue
                    t.state.apply(update, time.monotonic(), snapshot=snapshot)
                    if snapshot:
                        t.connected = True
                        backoff = 0.1
                        if attempt:
                            self._metrics.destination_reconnects.labels(self._metrics.namespace,
                                                                        self._metrics.pod).inc()
                            self._log.info("resolve.reconnected", path=t.path, kind=t.state.kind.value)
                    snapshot = False
                    t.answered.set()
                error = "stream ended"
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the control plane may be down: retry, keep endpoints
                error = f"{type(e).__name__}: {e}"
                if isinstance(e, OSError) and self._channel is not None:
                    self._channel.close()
                    self._channel = None
            t.connected = False
            attempt += 1
            if not t.answered.is_set() and attempt >= 2:
                # never answered: let waiting requests fall back to passthrough meanwhile
                t.answered.set()
            delay = backoff * (0.5 + random.random())
            self._log.debug("resolve.retry", path=t.path, error=error, retry_in=round(delay, 3))
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, 10.0)


def usable(t: Target) -> Kind:
    """What to do with a target now: UNKNOWN (never answered) is treated as passthrough."""
    k = t.state.kind
    return Kind.PASSTHROUGH if k is Kind.UNKNOWN else k
