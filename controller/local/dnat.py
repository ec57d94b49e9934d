"""The per-pod `MESHLET_SERVICES` chain: a tiny kube-proxy in iptables.

For every Service port with ready endpoints, one DNAT rule per endpoint; rule
i of n matches with probability 1/(n-i) (`-m statistic --mode random`), the
last one unconditionally, which spreads new connections evenly. Ports
without endpoints get a filter-table REJECT so clients fail fast instead of
timing out. Pure: returns rule lines for `meshlet.proxy.init.iptables.nat_table`.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshlet.proxy.init.iptables import SERVICES

PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True)
class Endpoint:
    ip: ipaddress.IPv4Address
    port: int


@dataclass(frozen=True)
class ServicePortRule:
    """One Service port and where its VIP traffic goes."""

    vip: ipaddress.IPv4Address
    port: int
    protocol: str
    endpoints: tuple[Endpoint, ...]
    comment: str = ""

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unsupported Service protocol {self.protocol!r} (want one of {PROTOCOLS})")


def _match(rule: ServicePortRule) -> str:
    comment = f' -m comment --comment "{rule.comment}"' if rule.comment else ""
    return f"-d {rule.vip}/32 -p {rule.protocol} -m {rule.protocol} --dport {rule.port}{comment}"


def nat_rules(rules: Iterable[ServicePortRule]) -> list[str]:
    out: list[str] = []
    for rule in rules:
        eps = sorted(set(rule.endpoints), key=lambda e: (int(e.ip), e.port))
        n = len(eps)
        for i, ep in enumerate(eps):
            stat = "" if i == n - 1 else f" -m statistic --mode random --probability {1 / (n - i):.11f}"
            out.append(f"-A {SERVICES} {_match(rule)}{stat} -j DNAT --to-destination {ep.ip}:{ep.port}")
    return out


def filter_table(rules: Sequence[ServicePortRule]) -> str:
    """`*filter` payload rejecting Service ports that have no endpoints."""
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             f":{SERVICES} - [0:0]", f"-A OUTPUT -j {SERVICES}"]
    for rule in rules:
        if not rule.endpoints:
            reject = "tcp-reset" if rule.protocol == "tcp" else "icmp-port-unreachable"
            lines.append(f"-A {SERVICES} {_match(rule)} -j REJECT --reject-with {reject}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
