"""tcp_routes and tls_routes (VirtualService `tcp:` / `tls:`): compiled from the profile, matched per
connection on port, destination address, SNI (source labels are decided at compile time)."""
from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class L4RouteError(ValueError):
    """A tcp/tls route in the profile that cannot be used."""


@dataclass(frozen=True, slots=True)
class L4Match:
    port: int = 0
    subnets: tuple[Net, ...] = ()
    sni_hosts: tuple[str, ...] = ()

    def test(self, ip: str, port: int, sni: str | None) -> bool:
        if self.port and self.port != port:
            return False
        if self.subnets:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return False
            if not any(addr in n for n in self.subnets):
                return False
        if self.sni_hosts:
            return sni is not None and any(sni_matches(h, sni) for h in self.sni_hosts)
        return True


@dataclass(frozen=True, slots=True)
class L4Backend:
    authority: str
    weight: int = 1
    subset_labels: tuple[tuple[str, str], ...] = ()
    """Only the backend's endpoints carrying these labels (a DestinationRule subset)."""
    subset: str = ""
    """The subset's name (its traffic policy overrides the backend's)."""


@dataclass(frozen=True, slots=True)
class L4Route:
    matches: tuple[L4Match, ...]
    backends: tuple[L4Backend, ...]

    def test(self, ip: str, port: int, sni: str | None) -> bool:
        return not self.matches or any(m.test(ip, port, sni) for m in self.matches)

    def pick(self, rng: random.Random) -> L4Backend:
        total = sum(b.weight for b in self.backends)
        if total <= 0:
            return self.backends[0]
        x = rng.random() * total
        for b in self.backends:
            x -= b.weight
            if x < 0:
                return b
        return self.backends[-1]


@dataclass(frozen=True, slots=True)
class L4Routes:
    tcp: tuple[L4Route, ...] = ()
    tls: tuple[L4Route, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tcp or self.tls)

    def select(self, ip: str, port: int, sni: str | None) -> L4Route | None:
        """`sni` None: not TLS from the app (tcp_routes); a string: its ClientHello's SNI (tls_routes,
        then tcp_routes, as Envoy's filter chains fall back to TCP ones)."""
        if sni is not None:
            for r in self.tls:
                if r.test(ip, port, sni):
                    return r
        for r in self.tcp:
            if r.test(ip, port, None):
                return r
        return None

    def describe(self) -> dict[str, object]:
        """As JSON values (for /config_dump)."""
        def one(r: L4Route) -> dict[str, object]:
            return {"matches": [{"port": m.port, "destination_subnets": [str(n) for n in m.subnets],
                                 "sni_hosts": list(m.sni_hosts)} for m in r.matches],
                    "backends": [{"authority": b.authority, "weight": b.weight,
                                  **({"subset_labels": dict(b.subset_labels)} if b.subset_labels else {})}
                                 for b in r.backends]}
        return {"tcp_routes": [one(r) for r in self.tcp], "tls_routes": [one(r) for r in self.tls]}

    @property
    def authorities(self) -> frozenset[str]:
        return frozenset(b.authority for r in self.tcp + self.tls for b in r.backends)


NO_L4 = L4Routes()


def sni_matches(pattern: str, sni: str) -> bool:
    pattern = pattern.lower().rstrip(".")
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return sni.endswith(pattern[1:]) and len(sni) > len(pattern) - 1
    return pattern == sni


def _compile(routes: Any, kind: str, source_labels: Mapping[str, str]) -> tuple[L4Route, ...]:
    out = []
    for i, rm in enumerate(routes):
        where = f"{kind}[{i}]"
        matches = []
        for j, mm in enumerate(rm.matches):
            if any(source_labels.get(k) != v for k, v in mm.source_labels.items()):
                continue  # never for this pod
            nets = []
            for s in mm.destination_subnets:
                try:
                    nets.append(ipaddress.ip_network(s, strict=False))
                except ValueError:
                    raise L4RouteError(f"{where}.matches[{j}].destination_subnets: bad subnet {s!r}") from None
            matches.append(L4Match(int(mm.port), tuple(nets), tuple(h.lower() for h in mm.sni_hosts)))
        if rm.matches and not matches:
            continue
        backends = tuple(L4Backend(b.authority, int(b.weight), tuple(sorted(b.subset_labels.items())), b.subset)
                         for b in rm.backends if b.authority)
        if not backends:
            raise L4RouteError(f"{where}: no backend")
        if len(backends) == 1 and backends[0].weight == 0:
            backends = (L4Backend(backends[0].authority, 1, backends[0].subset_labels, backends[0].subset),)
        out.append(L4Route(tuple(matches), backends))
    return tuple(out)


def compile_l4(m: Any, source_labels: Mapping[str, str]) -> L4Routes:
    """The `tcp_routes` / `tls_routes` of a `destination_pb.DestinationProfile` for this pod."""
    tcp = _compile(m.tcp_routes, "tcp_routes", source_labels)
    tls = _compile(m.tls_routes, "tls_routes", source_labels)
    return L4Routes(tcp, tls) if tcp or tls else NO_L4
