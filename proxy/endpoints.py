"""Domain types of service discovery and the update logic of one target (pure).

Protobuf messages are converted into these in `resolve.py` only.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from .balance import PeakEwma


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int
    weight: int = 1
    identity: str = ""
    """Expected SPIFFE id of the endpoint's proxy; empty = plaintext."""
    server_name: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    """Metric labels."""
    hint: str = ""
    pod_labels: tuple[tuple[str, str], ...] = ()
    """Every label of the endpoint's pod (subsets, locality)."""

    @property
    def addr(self) -> tuple[str, int]:
        return (self.ip, self.port)


@dataclass(frozen=True, slots=True)
class Add:
    endpoints: tuple[Endpoint, ...]
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Remove:
    addrs: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class NoEndpointsUpdate:
    exists: bool
    blocked: bool = False


Update = Add | Remove | NoEndpointsUpdate


class Kind(enum.Enum):
    UNKNOWN = "unknown"
    """No answer from the control plane yet."""
    ENDPOINTS = "endpoints"
    EMPTY = "empty"
    """The service exists but has no ready endpoints."""
    PASSTHROUGH = "passthrough"
    """Not a mesh service: connect to the original destination."""
    BLOCKED = "blocked"
    """Not a mesh service and the outbound traffic policy forbids it: refuse."""


class Balanced:
    """One endpoint with its load estimate (what the balancer chooses among)."""

    __slots__ = ("endpoint", "load")

    def __init__(self, endpoint: Endpoint, now: float) -> None:
        self.endpoint = endpoint
        self.load = PeakEwma(now)

    def __repr__(self) -> str:
        return f"<Balanced {self.endpoint.ip}:{self.endpoint.port} {self.load!r}>"


@dataclass
class EndpointState:
    """The endpoints of one target as known from its update stream."""

    kind: Kind = Kind.UNKNOWN
    endpoints: dict[tuple[str, int], Balanced] = field(default_factory=dict)
    labels: tuple[tuple[str, str], ...] = ()
    version: int = 0
    _list: list[Balanced] | None = None
    _subsets: dict[tuple[tuple[str, str], ...], list[Balanced]] = field(default_factory=dict)

    def apply(self, update: Update, now: float, *, snapshot: bool = False) -> None:
        """Apply one update; `snapshot` marks the first message of a (re)connected stream,
        which replaces the whole set. Duplicates and reordering are tolerated."""
        if isinstance(update, Add):
            if snapshot or self.kind is not Kind.ENDPOINTS:
                old = self.endpoints
                self.endpoints = {}
            else:
                old = self.endpoints
            for ep in update.endpoints:
                prev = old.get(ep.addr)
                b = Balanced(ep, now)
                if prev is not None:
                    b.load = prev.load  # keep the latency estimate across updates
                self.endpoints[ep.addr] = b
            if update.labels or snapshot:
                self.labels = update.labels
            self.kind = Kind.ENDPOINTS if self.endpoints else Kind.EMPTY
        elif isinstance(update, Remove):
            for addr in update.addrs:
                self.endpoints.pop(addr, None)
            if self.kind is Kind.ENDPOINTS and not self.endpoints:
                self.kind = Kind.EMPTY
        elif isinstance(update, NoEndpointsUpdate):
            self.endpoints = {}
            self.kind = Kind.EMPTY if update.exists else Kind.BLOCKED if update.blocked else Kind.PASSTHROUGH
        self.version += 1
        self._list = None
        self._subsets.clear()

    def balanced(self) -> list[Balanced]:
        if self._list is None:
            self._list = list(self.endpoints.values())
        return self._list

    def subset(self, labels: tuple[tuple[str, str], ...]) -> list[Balanced]:
        """Endpoints whose pod carries every one of `labels` (cached until the next update)."""
        if not labels:
            return self.balanced()
        got = self._subsets.get(labels)
        if got is None:
            got = self._subsets[labels] = [
                b for b in self.endpoints.values()
                if all(dict(b.endpoint.pod_labels).get(k) == v for k, v in labels)]
        return got

    def snapshot(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "labels": dict(self.labels),
            "endpoints": [
                {"addr": f"{b.endpoint.ip}:{b.endpoint.port}", "weight": b.endpoint.weight,
                 "identity": b.endpoint.identity, "labels": dict(b.endpoint.labels),
                 "pod_labels": dict(b.endpoint.pod_labels),
                 "ewma_ms": round(b.load.estimate * 1000, 3), "pending": b.load.pending}
                for b in self.endpoints.values()
            ],
        }


def labels_of(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(pairs))
