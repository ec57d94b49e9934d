"""Domain types of service discovery: endpoints (`Address`) and sets of them.

Only `translator.py` converts these to protobuf; the watcher and publishers
work with these frozen values and compute diffs between them.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

DEFAULT_WEIGHT = 10_000

AddressId = tuple[str, int]
"""(ip, port): what identifies an endpoint on the wire (`remove` carries only that)."""


def _frozen(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Address:
    """One endpoint: a pod's address and the port traffic goes to."""

    ip: str
    port: int
    pod: str = ""
    namespace: str = ""
    service_account: str = ""
    identity: str | None = None
    """SPIFFE id the endpoint's proxy presents; None when the pod is not meshed."""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    weight: int = DEFAULT_WEIGHT

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen(self.labels))

    @property
    def id(self) -> AddressId:
        return (self.ip, self.port)


@dataclass(frozen=True)
class AddressSet:
    """Endpoints of one (service, port) plus labels shared by all of them."""

    addresses: Mapping[AddressId, Address] = field(default_factory=dict, hash=False)
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "addresses", MappingProxyType(dict(self.addresses)))
        object.__setattr__(self, "labels", _frozen(self.labels))

    @classmethod
    def of(cls, addresses: Iterable[Address], labels: Mapping[str, str] | None = None) -> AddressSet:
        return cls({a.id: a for a in addresses}, labels or {})

    def __len__(self) -> int:
        return len(self.addresses)

    def __bool__(self) -> bool:
        return bool(self.addresses)

    def sorted(self) -> list[Address]:
        return [self.addresses[k] for k in sorted(self.addresses)]

    def diff(self, newer: AddressSet) -> tuple[AddressSet, AddressSet]:
        """(added, removed) going from self to `newer`; a changed endpoint counts as added again."""
        added = [a for k, a in newer.addresses.items() if self.addresses.get(k) != a]
        removed = [a for k, a in self.addresses.items() if k not in newer.addresses]
        return AddressSet.of(added, newer.labels), AddressSet.of(removed, self.labels)
