"""The analyzers: pure functions from a Snapshot to Messages (one concern each, Istio's where it has one)."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator

from meshlet.controller.analyze import messages as msg
from meshlet.controller.analyze.messages import Message, Origin
from meshlet.controller.analyze.snapshot import Snapshot, group_by
from meshlet.controller.model import (
    HTTPRoute,
    PeerAuthentication,
    Resource,
    Service,
    VirtualService,
    to_obj,
)
from meshlet.controller.model.convert import suggest
from meshlet.controller.model.istio_common import (
    MESH_GATEWAY,
    gateway_ref,
    host_matches,
)
from meshlet.controller.model.istio_virtualservice import Destination

Analyzer = Callable[[Snapshot], Iterable[Message]]


def origin(r: Resource) -> Origin:
    return Origin(r.kind, r.metadata.namespace or "" if r.namespaced else "", r.name)


def _destinations(vs: VirtualService) -> Iterator[tuple[str, Destination]]:
    for i, rule in enumerate(vs.spec.http):
        for j, d in enumerate(rule.route):
            yield f"spec.http[{i}].route[{j}].destination", d.destination
        if rule.mirror is not None:
            yield f"spec.http[{i}].mirror", rule.mirror
        for j, m in enumerate(rule.mirrors):
            yield f"spec.http[{i}].mirrors[{j}].destination", m.destination
    for kind, rules in (("tcp", vs.spec.tcp), ("tls", vs.spec.tls)):
        for i, l4 in enumerate(rules):
            for j, d in enumerate(l4.route):
                yield f"spec.{kind}[{i}].route[{j}].destination", d.destination


def destination_hosts(snap: Snapshot) -> Iterator[Message]:
    """IST0101: a route's destination host (or host+subset) that nothing defines."""
    subsets: dict[str, set[str]] = {}
    for dr in snap.destination_rules():
        host = snap.fqdn(dr.spec.host, dr.metadata.namespace or "default")
        subsets.setdefault(host, set()).update(s.name for s in dr.spec.subsets)
    for vs in snap.virtual_services():
        ns = vs.metadata.namespace or "default"
        for path, dest in _destinations(vs):
            host = snap.fqdn(dest.host, ns)
            if not snap.host_known(host):
                yield Message(msg.REFERENCED_RESOURCE_NOT_FOUND, origin(vs), ("host", dest.host), f"{path}.host",
                              _host_hint(snap, dest.host, ns))
                continue
            if dest.subset is None:
                continue
            defined = set().union(*(names for pattern, names in subsets.items() if host_matches(pattern, host)))
            if dest.subset not in defined:
                close = suggest(dest.subset, sorted(defined))
                hint = (f"did you mean {close!r}?" if close else
                        f"subsets defined: {', '.join(sorted(defined))}" if defined else
                        "no DestinationRule defines subsets for this host")
                yield Message(msg.REFERENCED_RESOURCE_NOT_FOUND, origin(vs),
                              ("host+subset in destinationrule", f"{dest.host}+{dest.subset}"), f"{path}.subset",
                              hint)


def _host_hint(snap: Snapshot, host: str, namespace: str) -> str:
    """`reviews.bookinfo` is taken literally (Istio's rule): point at the FQDN; else the closest known name."""
    services = snap.services_by_host()
    parts = host.split(".")
    if len(parts) == 2 and f"{host}.svc.{snap.domain}" in services:
        return f"write {host}.svc.{snap.domain}: a name with a dot is taken as a full host name"
    local = {name.split(".")[0]: name for name in services if name.split(".")[1] == namespace}
    candidates = [*local, *services, *(p for p, _ in snap.service_entry_hosts())]
    close = suggest(host, candidates)
    return f"did you mean {close!r}?" if close and close != host else ""


def gateways(snap: Snapshot) -> Iterator[Message]:
    """IST0101 for a gateway that does not exist; IST0132 for VS hosts the gateway does not serve."""
    known = snap.gateways()
    for vs in snap.virtual_services():
        ns = vs.metadata.namespace or "default"
        refs = list(vs.spec.gateways) + [g for rule in vs.spec.http for m in rule.match for g in m.gateways]
        for ref in dict.fromkeys(refs):
            if ref == MESH_GATEWAY:
                continue
            gw = known.get(gateway_ref(ref, ns))
            if gw is None:
                yield Message(msg.REFERENCED_RESOURCE_NOT_FOUND, origin(vs), ("gateway", ref), "spec.gateways")
                continue
            served = [h.partition("/")[2] if "/" in h else h for s in gw.spec.servers for h in s.hosts]
            missing = [h for h in vs.spec.hosts if not any(host_matches(p, h) or p == h for p in served)]
            if missing:
                yield Message(msg.VS_HOST_NOT_FOUND_IN_GATEWAY, origin(vs),
                              (",".join(missing), f"{ns}/{vs.name}", f"{gw.metadata.namespace}/{gw.name}"),
                              "spec.hosts")


def gateway_servers(snap: Snapshot) -> Iterator[Message]:
    """MLT0004: an HTTPS or TLS server without tls settings (Istio's validation refuses it)."""
    for gw in snap.gateways().values():
        for i, server in enumerate(gw.spec.servers):
            protocol = server.port.protocol.upper()
            if protocol in ("HTTPS", "TLS") and (server.tls is None or server.tls.mode is None):
                yield Message(msg.GATEWAY_SERVER_WITHOUT_TLS, origin(gw),
                              (server.name or server.port.name or f"#{i}", server.port.number, protocol),
                              f"spec.servers[{i}].tls")


def conflicting_mesh_hosts(snap: Snapshot) -> Iterator[Message]:
    """IST0109: two VirtualServices for the mesh gateway claim the same host."""
    claims: list[tuple[str, Resource]] = []
    for vs in snap.virtual_services():
        if vs.spec.gateways and MESH_GATEWAY not in vs.spec.gateways:
            continue
        for host in dict.fromkeys(snap.fqdn(h, vs.metadata.namespace or "default") for h in vs.spec.hosts):
            claims.append((host, vs))
    for host, owners in sorted(group_by(claims).items()):
        if len(owners) < 2:
            continue
        names = ",".join(f"{r.metadata.namespace}/{r.name}" for r in owners)
        for vs in owners:
            yield Message(msg.CONFLICTING_MESH_GATEWAY_VS_HOSTS, origin(vs), (names, host), "spec.hosts")


def _rule_name(name: str | None, index: int) -> str:
    return name or f"#{index}"


def unreachable_rules(snap: Snapshot) -> Iterator[Message]:
    """IST0130/IST0131: rules after a catch-all, and matches an earlier rule already takes."""
    for vs in snap.virtual_services():
        for kind, rules in (("http", vs.spec.http), ("tcp", vs.spec.tcp), ("tls", vs.spec.tls)):
            seen: dict[str, int] = {}
            catch_all = -1
            for i, rule in enumerate(rules):
                name = _rule_name(getattr(rule, "name", None), i)
                path = f"spec.{kind}[{i}]"
                matches = list(rule.match)
                unconditional = not matches or (kind == "http" and rule.is_catch_all)  # type: ignore[union-attr]
                if catch_all >= 0:
                    reason = ("only the last rule can have no matches" if not matches else
                              f"rule {_rule_name(getattr(rules[catch_all], 'name', None), catch_all)} "
                              "before it matches every request")
                    yield Message(msg.VS_UNREACHABLE_RULE, origin(vs), (name, reason), path)
                    continue
                if unconditional:
                    catch_all = i
                    continue
                duplicates = 0
                for j, match in enumerate(matches):
                    key = json.dumps(to_obj(match), sort_keys=True)
                    if key in seen:
                        duplicates += 1
                        first = seen[key]
                        yield Message(msg.VS_INEFFECTIVE_MATCH, origin(vs),
                                      (name, _rule_name(getattr(match, "name", None), j),
                                       _rule_name(getattr(rules[first], "name", None), first)),
                                      f"{path}.match[{j}]")
                    else:
                        seen[key] = i
                if duplicates == len(matches):
                    yield Message(msg.VS_UNREACHABLE_RULE, origin(vs), (name, "all matches used by prior rules"),
                                  path)


def destination_rules(snap: Snapshot) -> Iterator[Message]:
    """IST0174 for a DR host nothing defines; IST0173 for a subset matching no workload; MLT0003 duplicates."""
    services = snap.services_by_host()
    workloads = snap.workloads()
    by_host: list[tuple[str, Resource]] = []
    for dr in snap.destination_rules():
        ns = dr.metadata.namespace or "default"
        host = snap.fqdn(dr.spec.host, ns)
        by_host.append((f"{ns} {host}", dr))
        if "*" in host:
            continue
        if not snap.host_known(host):
            yield Message(msg.UNKNOWN_DR_HOST, origin(dr), (dr.spec.host,), "spec.host")
            continue
        svc = services.get(host)
        if not isinstance(svc, Service) or not svc.spec.selector:
            continue  # a ServiceEntry (or a Service without selector): no pods to check
        for i, subset in enumerate(dr.spec.subsets):
            wanted = {**svc.spec.selector, **subset.labels}
            if not any(w.namespace == svc.metadata.namespace and
                       all(w.labels.get(k) == v for k, v in wanted.items()) for w in workloads):
                yield Message(msg.DR_SUBSET_NOT_SELECT_PODS, origin(dr), (subset.name,), f"spec.subsets[{i}]")
    for key, owners in sorted(group_by(by_host).items()):
        if len(owners) > 1:
            names = ",".join(f"{r.metadata.namespace}/{r.name}" for r in owners)
            for dr in owners:
                yield Message(msg.DUPLICATE_DESTINATION_RULES, origin(dr), (names, key.split(" ")[1]), "spec.host")


def peer_authentications(snap: Snapshot) -> Iterator[Message]:
    """MLT0002: portLevelMtls on a namespace- or mesh-wide policy (Istio's validation refuses it)."""
    for pa in snap.of_kind("PeerAuthentication"):
        if isinstance(pa, PeerAuthentication) and pa.spec.port_level_mtls and \
                (pa.spec.selector is None or not pa.spec.selector.match_labels):
            ports = ",".join(str(p) for p in sorted(pa.spec.port_level_mtls))
            yield Message(msg.PORT_LEVEL_MTLS_WITHOUT_SELECTOR, origin(pa), (ports,), "spec.portLevelMtls")


def http_routes(snap: Snapshot) -> Iterator[Message]:
    """IST0101: an HTTPRoute's parent Service or backend Service that does not exist."""
    services = snap.services_by_host()
    for route in snap.of_kind("HTTPRoute"):
        if not isinstance(route, HTTPRoute):
            continue
        ns = route.metadata.namespace or "default"
        for i, parent in enumerate(route.spec.parent_refs):
            if parent.is_service and snap.fqdn(parent.name, parent.namespace or ns) not in services:
                yield Message(msg.REFERENCED_RESOURCE_NOT_FOUND, origin(route), ("service", parent.name),
                              f"spec.parentRefs[{i}]")
        for i, rule in enumerate(route.spec.rules):
            for j, backend in enumerate(rule.backend_refs):
                if backend.kind in (None, "Service") and \
                        snap.fqdn(backend.name, backend.namespace or ns) not in services:
                    yield Message(msg.REFERENCED_RESOURCE_NOT_FOUND, origin(route), ("service", backend.name),
                                  f"spec.rules[{i}].backendRefs[{j}]")


ANALYZERS: tuple[Analyzer, ...] = (destination_hosts, gateways, gateway_servers, conflicting_mesh_hosts,
                                   unreachable_rules, destination_rules, peer_authentications, http_routes)
