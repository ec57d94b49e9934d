"""Service clusterIP allocation, like the API server's: a store defaulter.

On create a Service without `clusterIP` gets the lowest free address of the
service CIDR (the network address, the first host address and the broadcast
address are never handed out); a requested address must be inside the CIDR
and free. Updates keep the existing address (changing it is refused).
Headless (`clusterIP: None`) and ExternalName Services get none.
"""
from __future__ import annotations

import ipaddress
from dataclasses import replace

from meshlet.controller.model import Resource, Service
from meshlet.controller.store.errors import Invalid
from meshlet.controller.store.sqlite import TxnView

HEADLESS = "None"


class ClusterIPAllocator:
    def __init__(self, cidr: ipaddress.IPv4Network) -> None:
        if cidr.num_addresses < 4:
            raise ValueError(f"service CIDR {cidr} is too small")
        self.cidr = cidr
        self._first = int(cidr.network_address) + 2  # skip the network and the gateway-like .1
        self._last = int(cidr.broadcast_address) - 1

    def __repr__(self) -> str:
        return f"<ClusterIPAllocator {self.cidr}>"

    def __call__(self, resource: Resource, existing: Resource | None, view: TxnView) -> Resource:
        if not isinstance(resource, Service):
            return resource
        spec = resource.spec
        where = f"service/{resource.metadata.name}: spec.clusterIP"
        if spec.type == "ExternalName":
            return resource
        old_ip = existing.spec.cluster_ip if isinstance(existing, Service) else None
        if old_ip:
            if spec.cluster_ip not in (None, "", old_ip):
                raise Invalid(f"{where}: field is immutable (is {old_ip}, requested {spec.cluster_ip})")
            return resource if spec.cluster_ip == old_ip else replace(resource, spec=replace(spec, cluster_ip=old_ip))
        if spec.cluster_ip == HEADLESS:
            return resource
        used = {s.spec.cluster_ip for s in view.list("Service")
                if isinstance(s, Service) and s.key != resource.key and s.spec.cluster_ip}
        if spec.cluster_ip:
            self._check_requested(spec.cluster_ip, used, where)
            return resource
        return replace(resource, spec=replace(spec, cluster_ip=self._allocate(used, where)))

    def _check_requested(self, requested: str, used: set[str | None], where: str) -> None:
        try:
            ip = ipaddress.IPv4Address(requested)
        except ValueError:
            raise Invalid(f"{where}: {requested!r} is not an IPv4 address") from None
        if not self._first <= int(ip) <= self._last:
            raise Invalid(f"{where}: {requested} is not an allocatable address of the service CIDR {self.cidr}")
        if requested in used:
            raise Invalid(f"{where}: {requested} is already allocated to another Service")

    def _allocate(self, used: set[str | None], where: str) -> str:
        taken = {int(ipaddress.IPv4Address(ip)) for ip in used if ip and ip != HEADLESS}
        for candidate in range(self._first, self._last + 1):
            if candidate not in taken:
                return str(ipaddress.IPv4Address(candidate))
        raise Invalid(f"{where}: no free address left in the service CIDR {self.cidr}")
