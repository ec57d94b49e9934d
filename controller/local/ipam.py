"""Pod address allocation from the pod CIDR, persisted so restarts never duplicate.

`Ipam` is pure (a dict of allocations plus a cursor); `IpamFile` loads and
saves it atomically under the state dir. The gateway (first host address),
the network and broadcast addresses are never handed out. Released
addresses are reused only after the cursor wraps around, so a new pod rarely
inherits a just-deleted pod's address (stale ARP/conntrack entries).
"""
from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path


class IpamError(Exception):
    """No address left, or a corrupt allocation file."""


class Ipam:
    def __init__(self, cidr: ipaddress.IPv4Network, allocations: dict[str, str] | None = None,
                 cursor: int = 0) -> None:
        self.cidr = cidr
        self.gateway = next(cidr.hosts())
        self.allocations: dict[str, ipaddress.IPv4Address] = {}
        for key, ip in (allocations or {}).items():
            addr = ipaddress.IPv4Address(ip)
            if addr not in cidr:
                raise IpamError(f"allocation {key}={ip} is outside the pod CIDR {cidr}")
            self.allocations[key] = addr
        self.cursor = cursor

    def _size(self) -> int:
        return self.cidr.num_addresses

    def allocate(self, key: str) -> ipaddress.IPv4Address:
        """The address of `key` (the same one if already allocated)."""
        if key in self.allocations:
            return self.allocations[key]
        used = set(self.allocations.values())
        size = self._size()
        base = int(self.cidr.network_address)
        for step in range(size):
            offset = (self.cursor + step) % size
            addr = ipaddress.IPv4Address(base + offset)
            if offset in (0, size - 1) or addr == self.gateway or addr in used:
                continue
            self.allocations[key] = addr
            self.cursor = (offset + 1) % size
            return addr
        raise IpamError(f"pod CIDR {self.cidr} is exhausted ({len(used)} addresses in use)")

    def release(self, key: str) -> None:
        self.allocations.pop(key, None)

    def to_json(self) -> dict[str, object]:
        return {"cidr": str(self.cidr), "cursor": self.cursor,
                "allocations": {k: str(v) for k, v in sorted(self.allocations.items())}}

    @classmethod
    def from_json(cls, cidr: ipaddress.IPv4Network, data: dict[str, object]) -> Ipam:
        if data.get("cidr") != str(cidr):
            # the CIDR changed: old allocations are meaningless
            return cls(cidr)
        allocs = data.get("allocations", {})
        cursor = data.get("cursor", 0)
        if not isinstance(allocs, dict) or not isinstance(cursor, int):
            raise IpamError("corrupt ipam state: allocations must be a mapping, cursor an integer")
        return cls(cidr, {str(k): str(v) for k, v in allocs.items()}, cursor)


class IpamFile:
    """`Ipam` persisted as JSON; every change is written before it is used."""

    def __init__(self, path: Path, cidr: ipaddress.IPv4Network) -> None:
        self.path = path
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise IpamError(f"cannot read {path}: {e}") from None
            self.ipam = Ipam.from_json(cidr, data)
        else:
            self.ipam = Ipam(cidr)

    def allocate(self, key: str) -> ipaddress.IPv4Address:
        addr = self.ipam.allocate(key)
        self._save()
        return addr

    def release(self, key: str) -> None:
        self.ipam.release(key)
        self._save()

    def allocated(self) -> list[str]:
        return list(self.ipam.allocations)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.ipam.to_json(), indent=1))
        os.replace(tmp, self.path)
