"""In-memory view of the traffic resources (pure, no I/O) and the lookups the translators need.

Tracks VirtualService, DestinationRule, ServiceEntry, Sidecar, HTTPRoute and
MeshConfig by (namespace, name). Lookups scan the tables (tens of rules in
local mode) and always see a consistent state.

Choices (see also destination/README.md):
- several VirtualServices for one host apply in creation order (their http
  rules concatenated, Istio's merge for sidecars);
- a DestinationRule is looked up in the caller's namespace, then the host's
  namespace, then the root namespace (`istio-system`, or MeshConfig
  `rootNamespace`); an exact host beats a wildcard; one with a
  `workloadSelector` applies only to matching callers of its namespace and
  beats the selector-less one there;
- the Sidecar of a caller: one whose workloadSelector matches the caller's
  labels in its namespace, else the selector-less one of its namespace, else
  the selector-less one of the root namespace.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .hosts import DEFAULT_DOMAIN, canonical_host, host_matches, specificity, visible
from .values import attr, items, labels_match, mapping

VIRTUAL_SERVICE = "VirtualService"
DESTINATION_RULE = "DestinationRule"
SERVICE_ENTRY = "ServiceEntry"
SIDECAR = "Sidecar"
HTTP_ROUTE = "HTTPRoute"
MESH_CONFIG = "MeshConfig"
RULE_KINDS = (VIRTUAL_SERVICE, DESTINATION_RULE, SERVICE_ENTRY, SIDECAR, HTTP_ROUTE, MESH_CONFIG)
ROOT_NAMESPACE = "istio-system"
ALLOW_ANY, REGISTRY_ONLY = "ALLOW_ANY", "REGISTRY_ONLY"

Key = tuple[str, str]


def namespace_of(resource: Any) -> str:
    return resource.metadata.namespace or "default"


def creation_order(resource: Any) -> tuple[str, str, str]:
    meta = resource.metadata
    return (meta.creation_timestamp or "", namespace_of(resource), meta.name)


def applies_to_mesh(vs: Any) -> bool:
    gateways = items(vs.spec, "gateways")
    return not gateways or "mesh" in gateways


class RuleIndex:
    def __init__(self, domain: str = DEFAULT_DOMAIN) -> None:
        self.domain = domain
        self._tables: dict[str, dict[Key, Any]] = {kind: {} for kind in RULE_KINDS}

    def __repr__(self) -> str:
        sizes = " ".join(f"{kind}={len(t)}" for kind, t in self._tables.items() if t)
        return f"<RuleIndex {sizes or 'empty'}>"

    def replace(self, kind: str, resources: Iterable[Any]) -> None:
        self._tables[kind] = {self._key(r): r for r in resources}

    def upsert(self, resource: Any) -> None:
        self._tables[resource.kind][self._key(resource)] = resource

    def delete(self, resource: Any) -> None:
        self._tables[resource.kind].pop(self._key(resource), None)

    @staticmethod
    def _key(resource: Any) -> Key:
        namespaced = getattr(resource, "namespaced", True)
        return (namespace_of(resource) if namespaced else "", resource.metadata.name)

    def all(self, kind: str) -> list[Any]:
        return sorted(self._tables[kind].values(), key=creation_order)

    # === mesh-wide settings ===

    def mesh_config(self) -> Any | None:
        table = self._tables[MESH_CONFIG]
        return table.get(("", "default")) or next(iter(table.values()), None)

    @property
    def root_namespace(self) -> str:
        return attr(attr(self.mesh_config(), "spec"), "root_namespace", default=ROOT_NAMESPACE)

    # === lookups ===

    def virtual_services(self, host: str, caller_ns: str) -> list[Any]:
        """VirtualServices for sidecars whose hosts cover `host`, visible in `caller_ns`, in creation order."""
        out = []
        for vs in self.all(VIRTUAL_SERVICE):
            ns = namespace_of(vs)
            if vs.spec is None or not applies_to_mesh(vs):
                continue
            if not visible(items(vs.spec, "export_to"), ns, caller_ns):
                continue
            if any(host_matches(canonical_host(h, ns, self.domain), host) for h in items(vs.spec, "hosts")):
                out.append(vs)
        return out

    def virtual_service(self, namespace: str, name: str) -> Any | None:
        """A VirtualService by name (delegate lookups)."""
        return self._tables[VIRTUAL_SERVICE].get((namespace, name))

    def destination_rule(self, host: str, caller_ns: str, host_ns: str | None,
                         caller_labels: Mapping[str, str] | None = None) -> Any | None:
        """The DestinationRule for `host`: caller's namespace, then the host's, then the root namespace.

        A rule with a `workloadSelector` applies only to callers of its own namespace whose labels
        match (Istio: selectors do not cross namespaces), and beats a selector-less rule for the
        same host there."""
        order = [caller_ns, host_ns, self.root_namespace]
        candidates: list[tuple[int, tuple[int, int], int, tuple[str, str, str], Any]] = []
        for dr in self._tables[DESTINATION_RULE].values():
            ns = namespace_of(dr)
            if dr.spec is None or ns not in order or not visible(items(dr.spec, "export_to"), ns, caller_ns):
                continue
            selector = attr(dr.spec, "workload_selector")
            if selector is not None and (ns != caller_ns or caller_labels is None or not labels_match(
                    mapping(selector, "match_labels", "labels"), caller_labels)):
                continue
            pattern = canonical_host(attr(dr.spec, "host", default=""), ns, self.domain)
            if host_matches(pattern, host):
                candidates.append((order.index(ns), specificity(pattern), 0 if selector is not None else 1,
                                   creation_order(dr), dr))
        return min(candidates, key=lambda c: c[:4])[4] if candidates else None

    def service_entries(self, caller_ns: str) -> list[Any]:
        return [se for se in self.all(SERVICE_ENTRY)
                if se.spec is not None and visible(items(se.spec, "export_to"), namespace_of(se), caller_ns)]

    def service_entry_for_host(self, hosts: Iterable[str], caller_ns: str,
                               port: int | None = None) -> tuple[Any, str] | None:
        """(ServiceEntry, the matching host) for any of `hosts` (and `port`, if given); exact hosts first."""
        wanted = [h.lower() for h in hosts]
        best: tuple[tuple[int, int], Any, str] | None = None
        for se in self.service_entries(caller_ns):
            ports = items(se.spec, "ports")
            if port is not None and ports and all(attr(p, "number") != port for p in ports):
                continue
            for raw in items(se.spec, "hosts"):
                pattern = canonical_host(raw, namespace_of(se), self.domain)
                for host in wanted:
                    if host_matches(pattern, host) or raw.lower() == host:
                        key = specificity(pattern)
                        if best is None or key < best[0]:
                            best = (key, se, host if pattern.startswith("*") else pattern)
        return None if best is None else (best[1], best[2])

    def http_routes_for_service(self, namespace: str, name: str, port: int) -> list[Any]:
        """Gateway API HTTPRoutes with a parentRef to Service `namespace/name` (port unset or equal)."""
        out = []
        for route in self.all(HTTP_ROUTE):
            route_ns = namespace_of(route)
            for ref in items(route.spec, "parent_refs"):
                if attr(ref, "kind", default="Gateway") != "Service" or attr(ref, "group", default="") not in ("", "core"):
                    continue
                if attr(ref, "namespace", default=route_ns) != namespace or attr(ref, "name") != name:
                    continue
                if attr(ref, "port") not in (None, port):
                    continue
                out.append(route)
                break
        return out

    def sidecar_for(self, caller_ns: str, caller_labels: Mapping[str, str]) -> Any | None:
        namespace_default = None
        for sidecar in self.all(SIDECAR):
            if namespace_of(sidecar) != caller_ns or sidecar.spec is None:
                continue
            selector = attr(sidecar.spec, "workload_selector")
            if selector is None:
                namespace_default = namespace_default or sidecar
            elif labels_match(mapping(selector, "labels", "match_labels"), caller_labels):
                return sidecar
        if namespace_default is not None:
            return namespace_default
        root = self.root_namespace
        return next((s for s in self.all(SIDECAR) if namespace_of(s) == root and s.spec is not None
                     and attr(s.spec, "workload_selector") is None), None)

    def outbound_mode(self, sidecar: Any | None) -> str:
        """REGISTRY_ONLY or ALLOW_ANY: the caller's Sidecar overrides the mesh-wide MeshConfig."""
        mode = attr(attr(attr(sidecar, "spec"), "outbound_traffic_policy"), "mode")
        if mode is None:
            mode = attr(attr(attr(self.mesh_config(), "spec"), "outbound_traffic_policy"), "mode")
        return REGISTRY_ONLY if str(mode or ALLOW_ANY).upper() == REGISTRY_ONLY else ALLOW_ANY
