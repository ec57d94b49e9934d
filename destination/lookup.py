"""What a target is in the registry, for one caller (pure): a Service, a pod, a ServiceEntry host, or unknown.

Shared by `Get` (endpoints) and `GetProfile` (routes):
- a Service (by name or VIP) or a pod IP, as before;
- otherwise a ServiceEntry visible to the caller (exportTo) whose hosts
  cover the target's host and whose ports include the target's port (a
  ServiceEntry without ports covers every port); for an IP target: an
  entry whose `addresses` hold the IP, whose STATIC endpoints or resolved
  DNS names have it, or a `resolution: NONE` entry without addresses on
  that port (Istio listens on 0.0.0.0:<port> for those);
- the caller's Sidecar egress hosts limit what is in its registry (an egress
  listener with a `port`: on that port only): out of scope is as if unknown.

Endpoints of a ServiceEntry: STATIC -> its endpoints (port from the
endpoint's `ports[<port name>]`, else the entry port's targetPort, else the
port); DNS/DNS_ROUND_ROBIN -> the resolved addresses of each endpoint
address, or of the host when there are none; NONE -> None (pass through).
They carry no TLS identity. A `workloadSelector` (MESH_INTERNAL) instead
selects the ready pods of the entry's namespace (meshed ones with their
identity), on the entry port's targetPort.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .address import Address, AddressSet
from .hosts import egress_allows, service_fqdn
from .index import EndpointIndex
from .rules import REGISTRY_ONLY, RuleIndex, namespace_of
from .targets import ExternalTarget, IpTarget, ServiceTarget, Target
from .values import attr, items, mapping

Lookup = Callable[[str], "tuple[str, ...] | None"]
"""DNS answers from the cache (None while pending); see dns.DnsCache.lookup."""


@dataclass(frozen=True)
class CallerRef:
    """Who asks: the caller's namespace, pod and (if it sent them) labels."""

    namespace: str = ""
    pod: str = ""
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Resolved:
    kind: str
    """"service", "pod", "entry" or "unknown"."""
    host: str = ""
    namespace: str = ""
    port: int = 0
    service: Any = None
    entry: Any = None
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    """The caller's labels (its pod's, when it did not send them)."""

    @property
    def known(self) -> bool:
        return self.kind != "unknown"


def caller_labels(caller: CallerRef, endpoints: EndpointIndex) -> dict[str, str]:
    if caller.labels:
        return dict(caller.labels)
    pod = endpoints.pod(caller.namespace, caller.pod) if caller.pod else None
    return dict(pod.metadata.labels) if pod is not None else {}


def identify(target: Target, caller: CallerRef, endpoints: EndpointIndex, rules: RuleIndex, dns: Lookup) -> Resolved:
    """What `target` is for `caller`, Sidecar egress scope applied."""
    labels = caller_labels(caller, endpoints)
    found = _identify(target, caller.namespace, endpoints, rules, dns)
    found = Resolved(found.kind, found.host, found.namespace, found.port, found.service, found.entry, labels)
    if found.kind in ("service", "entry") and not in_scope(found, caller, labels, rules):
        return Resolved("unknown", port=target.port, labels=labels)
    return found


def _identify(target: Target, caller_ns: str, endpoints: EndpointIndex, rules: RuleIndex, dns: Lookup) -> Resolved:
    domain = rules.domain
    if isinstance(target, ServiceTarget):
        service = endpoints.service(target.namespace, target.name)
        if service is not None:
            return Resolved("service", service_fqdn(target.name, target.namespace, domain), target.namespace,
                            target.port, service=service)
        hosts = [service_fqdn(target.name, target.namespace, domain), f"{target.name}.{target.namespace}"]
        return _entry(hosts, target.port, caller_ns, rules)
    if isinstance(target, ExternalTarget):
        return _entry([target.host], target.port, caller_ns, rules)
    if isinstance(target, IpTarget):
        service = endpoints.service_by_ip(target.ip)
        if service is not None:
            ns = namespace_of(service)
            return Resolved("service", service_fqdn(service.metadata.name, ns, domain), ns, target.port,
                            service=service)
        if endpoints.pod_by_ip(target.ip) is not None:
            return Resolved("pod", port=target.port)
        return _entry_by_ip(target, caller_ns, rules, dns)
    raise TypeError(f"unknown target {target!r}")


def _entry(hosts: list[str], port: int, caller_ns: str, rules: RuleIndex) -> Resolved:
    found = rules.service_entry_for_host(hosts, caller_ns, port)
    if found is None:
        return Resolved("unknown", port=port)
    se, host = found
    return Resolved("entry", host, namespace_of(se), port, entry=se)


def entry_port(se: Any, port: int) -> Any:
    """The entry's port object for `port`; None when it lists no ports; False when `port` is not among them."""
    ports = items(se.spec, "ports")
    if not ports:
        return None
    return next((p for p in ports if attr(p, "number") == port), False)


def _entry_by_ip(target: IpTarget, caller_ns: str, rules: RuleIndex, dns: Lookup) -> Resolved:
    ip = ipaddress.ip_address(target.ip)
    for se in rules.service_entries(caller_ns):
        if entry_port(se, target.port) is False:
            continue
        spec = se.spec
        resolution = str(attr(spec, "resolution", default="NONE")).upper()
        addresses = items(spec, "addresses")
        hit = any(_in(ip, a) for a in addresses)
        if not hit and resolution == "STATIC":
            hit = any(attr(e, "address") == target.ip for e in items(spec, "endpoints"))
        if not hit and resolution.startswith("DNS"):
            names = [attr(e, "address") for e in items(spec, "endpoints")] or list(items(spec, "hosts"))
            hit = any(target.ip in (dns(str(n)) or ()) for n in names if n and not str(n).startswith("*"))
        if not hit and resolution == "NONE" and not addresses and items(spec, "ports"):
            hit = True
        if hit:
            hosts = items(spec, "hosts")
            return Resolved("entry", str(hosts[0]).lower() if hosts else target.ip, namespace_of(se), target.port,
                            entry=se)
    return Resolved("unknown", port=target.port)


def _in(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, cidr: str) -> bool:
    try:
        return ip in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def in_scope(found: Resolved, caller: CallerRef, labels: Mapping[str, str], rules: RuleIndex) -> bool:
    """The caller's Sidecar (if any) lists the host among its egress hosts; an egress listener
    with a `port` lists its hosts for that port only."""
    sidecar = rules.sidecar_for(caller.namespace, labels)
    if sidecar is None:
        return True
    egress = items(sidecar.spec, "egress")
    if not egress:
        return True
    patterns = [h for listener in egress if attr(attr(listener, "port"), "number") in (None, found.port)
                for h in items(listener, "hosts")]
    sidecar_ns = namespace_of(sidecar)
    return egress_allows(patterns, sidecar_ns, found.namespace, found.host, rules.domain)


def blocked(caller: CallerRef, labels: Mapping[str, str], rules: RuleIndex) -> bool:
    """REGISTRY_ONLY for this caller (its Sidecar's outboundTrafficPolicy, else MeshConfig's)."""
    return rules.outbound_mode(rules.sidecar_for(caller.namespace, labels)) == REGISTRY_ONLY


def entry_endpoints(found: Resolved, dns: Lookup, endpoints: EndpointIndex | None = None) -> AddressSet | None:
    """Endpoints of a ServiceEntry target; None for `resolution: NONE` (pass through)."""
    se, port = found.entry, found.port
    spec = se.spec
    resolution = str(attr(spec, "resolution", default="NONE")).upper()
    if resolution == "NONE":
        return None
    se_port = entry_port(se, port) or None
    port_name = attr(se_port, "name")
    target_port = attr(se_port, "target_port") or port
    ns = namespace_of(se)
    labels = {"dst_service": found.host, "dst_namespace": ns}
    addresses: list[Address] = []
    selector = mapping(attr(spec, "workload_selector"), "match_labels", "labels")
    if selector and endpoints is not None:
        return AddressSet.of(endpoints.selected(ns, selector, int(target_port)), labels)
    entries = items(spec, "endpoints")
    if resolution == "STATIC":
        for e in entries:
            address = attr(e, "address")
            if address and not str(address).startswith("unix://"):
                ep_port = mapping(e, "ports").get(port_name, target_port) if port_name else target_port
                addresses.append(Address(str(address), int(ep_port), namespace=ns, labels=mapping(e, "labels")))
        return AddressSet.of(addresses, labels)
    sources = [(attr(e, "address"), e) for e in entries] or [(found.host, None)]
    for name, e in sources:
        if not name or str(name).startswith("*"):
            continue
        ep_port = mapping(e, "ports").get(port_name, target_port) if (e is not None and port_name) else target_port
        for ip in dns(str(name)) or ():
            addresses.append(Address(ip, int(ep_port), namespace=ns, labels=mapping(e, "labels")))
    return AddressSet.of(addresses, labels)
