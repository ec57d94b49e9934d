"""Service discovery: one `Destination.Get` stream per target, cached.

A target's `EndpointState` is kept up to date by its stream; when the stream
fails it is re-opened with exponential backoff and jitter while the last
known endpoints keep serving. Without a control plane every target passes
through to its original destination. The streams ride on the proxy's one
destination channel, shared with the profile streams (`dstclient.py`).
"""
from __future__ import annotations

import time
from typing import Any

from .config import ProxyConfig
from .dstclient import DestinationClient, ReconnectingStream, StreamTarget, TargetCache
from .endpoints import (
    Add,
    Endpoint,
    EndpointState,
    Kind,
    NoEndpointsUpdate,
    Remove,
    Update,
    labels_of,
)
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


class Target(StreamTarget):
    """One discovery target, e.g. "web.default.svc.cluster.local:8080" or "198.19.0.4:80"."""

    __slots__ = ("state",)

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.state = EndpointState()


class Resolver(TargetCache[Target]):
    """`client`: the proxy's shared destination client (one of its own when not given, closed with it)."""

    task_name = "resolve"

    def __init__(self, cfg: ProxyConfig, metrics: ProxyMetrics, log: Any, client: DestinationClient | None = None) -> None:
        self._own_client = client is None
        super().__init__(client or DestinationClient.from_config(cfg), cfg.max_targets)
        self.cfg = cfg
        self._metrics = metrics
        self._log = log.bind(component="resolver")

    def new_target(self, path: str) -> Target:
        return Target(path)

    def offline(self, t: Target) -> None:
        t.state.apply(NoEndpointsUpdate(exists=False), time.monotonic())
        t.answered.set()

    def snapshot(self) -> dict[str, object]:
        return {path: {**t.state.snapshot(), "stream_connected": t.connected} for path, t in self.items()}

    async def close(self) -> None:
        await super().close()
        if self._own_client:
            self.client.close()

    async def follow(self, t: Target) -> None:
        request = self.client.request(t.path, with_labels=False)
        stream = ReconnectingStream(self.client, lambda stub: stub.get(request), self._log, event="resolve",
                                    path=t.path, unimplemented_backoff=None)

        def on_message(msg: Any, first: bool) -> bool:
            update = from_proto(msg)
            if update is None:
                return False
            t.state.apply(update, time.monotonic(), snapshot=first)
            if first:
                t.connected = True
                if stream.failures:
                    self._metrics.destination_reconnects.labels(self._metrics.namespace, self._metrics.pod).inc()
                    self._log.info("resolve.reconnected", path=t.path, kind=t.state.kind.value)
            t.answered.set()
            return True

        def on_down(failures: int) -> None:
            t.connected = False
            if not t.answered.is_set() and failures >= 2:
                # never answered: let waiting requests fall back to passthrough meanwhile
                t.answered.set()

        await stream.run(on_message, on_down)


def usable(t: Target) -> Kind:
    """What to do with a target now: UNKNOWN (never answered) is treated as passthrough."""
    k = t.state.kind
    return Kind.PASSTHROUGH if k is Kind.UNKNOWN else k
