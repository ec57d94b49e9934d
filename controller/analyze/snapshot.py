"""A read-only view of every resource an analysis sees (store contents, overridden by files)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from meshlet.controller.model import (
    Deployment,
    DestinationRule,
    Gateway,
    Pod,
    Resource,
    Service,
    ServiceEntry,
    VirtualService,
)
from meshlet.controller.model.istio_common import fqdn, host_matches


@dataclass(frozen=True)
class Workload:
    """Something that runs pods with these labels: a Pod, or a Deployment's template (replicas > 0)."""

    namespace: str
    labels: dict[str, str]


@dataclass
class Snapshot:
    resources: dict[tuple[str, str, str], Resource] = field(default_factory=dict)
    domain: str = "cluster.local"
    _memo: dict[str, object] = field(default_factory=dict, repr=False)
    """Indexes built on first use; a Snapshot is not changed after `of`."""

    @classmethod
    def of(cls, *layers: Iterable[Resource], domain: str = "cluster.local") -> Snapshot:
        """Later layers override earlier ones object by object (files over the store)."""
        snap = cls(domain=domain)
        for layer in layers:
            for r in layer:
                snap.resources[r.key] = r
        return snap

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for k, r in sorted(self.resources.items()) if k[0] == kind]

    # === typed accessors ===

    def virtual_services(self) -> list[VirtualService]:
        return [r for r in self.of_kind("VirtualService") if isinstance(r, VirtualService)]

    def destination_rules(self) -> list[DestinationRule]:
        return [r for r in self.of_kind("DestinationRule") if isinstance(r, DestinationRule)]

    def gateways(self) -> dict[tuple[str, str], Gateway]:
        return {(r.metadata.namespace or "", r.name): r for r in self.of_kind("Gateway") if isinstance(r, Gateway)}

    def services_by_host(self) -> dict[str, Service]:
        if "services" not in self._memo:  # built once: analyzers ask per route
            self._memo["services"] = {f"{r.name}.{r.metadata.namespace}.svc.{self.domain}": r
                                      for r in self.of_kind("Service") if isinstance(r, Service)}
        return self._memo["services"]  # type: ignore[no-any-return]

    def service_entry_hosts(self) -> list[tuple[str, ServiceEntry]]:
        if "entries" not in self._memo:
            self._memo["entries"] = [(fqdn(h, r.metadata.namespace or "default", self.domain), r)
                                     for r in self.of_kind("ServiceEntry") if isinstance(r, ServiceEntry)
                                     for h in r.spec.hosts]
        return self._memo["entries"]  # type: ignore[no-any-return]

    def workloads(self) -> list[Workload]:
        out = [Workload(p.metadata.namespace or "", p.metadata.labels)
               for p in self.of_kind("Pod") if isinstance(p, Pod)]
        out += [Workload(d.metadata.namespace or "", d.spec.template.metadata.labels)
                for d in self.of_kind("Deployment") if isinstance(d, Deployment) and d.spec.replicas > 0]
        return out

    def fqdn(self, host: str, namespace: str) -> str:
        return fqdn(host, namespace, self.domain)

    def host_known(self, host: str) -> bool:
        """A Service or a ServiceEntry host covers this FQDN."""
        if host in self.services_by_host():
            return True
        return any(host_matches(pattern, host) for pattern, _ in self.service_entry_hosts())

    def namespaces_of(self) -> set[str]:
        return {k[1] for k in self.resources if k[1]}


def group_by(items: Iterable[tuple[str, Resource]]) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = defaultdict(list)
    for key, r in items:
        out[key].append(r)
    return out
