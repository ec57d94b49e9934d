"""Pure builder of a meshed pod's nat rules, as an `iptables-restore` payload.

The rules follow Istio's `istio-iptables` shape:

* PREROUTING → MESHLET_INBOUND: inbound TCP is redirected to the proxy's
  inbound port (15006) through MESHLET_IN_REDIRECT, except the proxy's own
  ports (admin, outbound, inbound, health, metrics) and excluded ports.
* OUTPUT → MESHLET_OUTPUT: outbound TCP is redirected to the proxy's outbound
  port (15001) through MESHLET_REDIRECT, except traffic of the proxy's group
  (`-m owner --gid-owner 1337`, so the proxy's own connections leave as they
  are), loopback destinations, excluded ports and excluded CIDRs. The proxy's
  own connections to this pod's address (over `lo`) go to the inbound side.

A second, optional part is the `MESHLET_SERVICES` chain (a tiny kube-proxy:
Service VIP:port → endpoint ip:port DNAT); it is rendered by
`meshlet.controller.local.dnat` and jumped to from OUTPUT *after* the mesh
redirect, so a meshed app's traffic reaches its proxy first while the proxy's
own traffic (and an unmeshed pod's) is load-balanced by the DNAT rules.

Everything here is pure: it returns text, it runs nothing.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from meshlet.controller.config import ProxyPorts

INBOUND = "MESHLET_INBOUND"
IN_REDIRECT = "MESHLET_IN_REDIRECT"
OUTPUT = "MESHLET_OUTPUT"
REDIRECT = "MESHLET_REDIRECT"
SERVICES = "MESHLET_SERVICES"
CHAINS = (INBOUND, IN_REDIRECT, OUTPUT, REDIRECT)


class RuleError(ValueError):
    """A capture setting cannot be turned into rules (names the bad value)."""


@dataclass(frozen=True)
class CaptureConfig:
    """What a meshed pod's rules redirect and what they let through."""

    proxy_ports: ProxyPorts = field(default_factory=ProxyPorts)
    proxy_gid: int = 1337
    exclude_inbound_ports: tuple[int, ...] = ()
    """Inbound destination ports never redirected (besides the proxy's own)."""
    exclude_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_cidrs: tuple[ipaddress.IPv4Network, ...] = ()
    include_outbound_cidrs: tuple[ipaddress.IPv4Network, ...] | None = None
    """Only these destinations are redirected outbound (Istio's `includeOutboundIPRanges`);
    None: every destination ("*"); empty: no outbound capture at all."""

    def __post_init__(self) -> None:
        for port in (*self.exclude_inbound_ports, *self.exclude_outbound_ports, *self.proxy_ports.all()):
            if not isinstance(port, int) or not 0 < port < 65536:
                raise RuleError(f"invalid port {port!r}: must be an integer in 1..65535")
        if not 0 <= self.proxy_gid < 2**32:
            raise RuleError(f"invalid proxy gid {self.proxy_gid!r}")

    def inbound_excluded(self) -> tuple[int, ...]:
        return _unique((*sorted(self.proxy_ports.all()), *self.exclude_inbound_ports))


def parse_ports(text: str) -> tuple[int, ...]:
    """"80, 8080" → (80, 8080); a clear RuleError on anything else."""
    ports: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise RuleError(f"invalid port {part!r} in {text!r}")
        ports.append(int(part))
    return tuple(ports)


def parse_cidrs(text: str) -> tuple[ipaddress.IPv4Network, ...]:
    cidrs: list[ipaddress.IPv4Network] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            cidrs.append(ipaddress.IPv4Network(part, strict=False))
        except ValueError as e:
            raise RuleError(f"invalid CIDR {part!r}: {e}") from None
    return tuple(cidrs)


def parse_include_cidrs(text: str) -> tuple[ipaddress.IPv4Network, ...] | None:
    """Istio's includeOutboundIPRanges: "*" → None (everything), "" → () (nothing), else CIDRs."""
    if text.strip() == "*":
        return None
    return parse_cidrs(text)


def _unique(items: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(items))


def mesh_chain_rules(cfg: CaptureConfig) -> list[str]:
    """The `-A` lines of the four mesh chains (without the jumps into them)."""
    p = cfg.proxy_ports
    rules = [f"-A {IN_REDIRECT} -p tcp -j REDIRECT --to-ports {p.inbound}"]
    for port in cfg.inbound_excluded():
        rules.append(f"-A {INBOUND} -p tcp -m tcp --dport {port} -j RETURN")
    rules.append(f"-A {INBOUND} -p tcp -j {IN_REDIRECT}")
    rules.append(f"-A {REDIRECT} -p tcp -j REDIRECT --to-ports {p.outbound}")
    # the proxy calling its own pod's address (a Service endpoint that is this pod) goes
    # over lo and would skip PREROUTING: send it to the inbound side like Istio does;
    # the proxy reaches its app at 127.0.0.1, which stays excluded
    rules.append(f"-A {OUTPUT} ! -d 127.0.0.1/32 -o lo -m owner --gid-owner {cfg.proxy_gid} -j {IN_REDIRECT}")
    # the app calling its own pod address over lo talks to itself, not through the proxy
    rules.append(f"-A {OUTPUT} -o lo -m owner ! --gid-owner {cfg.proxy_gid} -j RETURN")
    rules.append(f"-A {OUTPUT} -m owner --gid-owner {cfg.proxy_gid} -j RETURN")
    rules.append(f"-A {OUTPUT} -d 127.0.0.0/8 -j RETURN")
    for port in _unique(cfg.exclude_outbound_ports):
        rules.append(f"-A {OUTPUT} -p tcp -m tcp --dport {port} -j RETURN")
    for cidr in dict.fromkeys(cfg.exclude_outbound_cidrs):
        rules.append(f"-A {OUTPUT} -d {cidr} -j RETURN")
    if cfg.include_outbound_cidrs is None:
        rules.append(f"-A {OUTPUT} -p tcp -j {REDIRECT}")
    else:
        for cidr in dict.fromkeys(cfg.include_outbound_cidrs):
            rules.append(f"-A {OUTPUT} -d {cidr} -p tcp -j {REDIRECT}")
    return rules


def nat_table(capture: CaptureConfig | None, services: Sequence[str] | None = None) -> str:
    """A whole `*nat` table for one pod's netns.

    `capture` None means an unmeshed pod (no redirect chains). `services` are
    the `-A MESHLET_SERVICES ...` lines (None: no Services chain at all).
    Applied without `--noflush`, it replaces the pod's nat table atomically,
    so re-applying it (endpoints changed) never duplicates rules.
    """
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]",
             ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
    if capture is not None:
        lines += [f":{c} - [0:0]" for c in CHAINS]
    if services is not None:
        lines.append(f":{SERVICES} - [0:0]")
    if capture is not None:
        lines.append(f"-A PREROUTING -p tcp -j {INBOUND}")
        lines.append(f"-A OUTPUT -p tcp -j {OUTPUT}")
    if services is not None:
        lines.append(f"-A OUTPUT -j {SERVICES}")
    if capture is not None:
        lines += mesh_chain_rules(capture)
    if services is not None:
        for rule in services:
            if not rule.startswith(f"-A {SERVICES} "):
                raise RuleError(f"service rule must append to {SERVICES}: {rule!r}")
            lines.append(rule)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
