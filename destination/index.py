"""In-memory view of Services, Pods and EndpointSlices and the endpoint rules (pure, no I/O).

Endpoints of a Service port are the pods of the Service's namespace whose
labels match its (non-empty) selector, phase Running, ready, with an IP; the
port is the Service port's targetPort, named ports resolved through the pod's
container ports. A pod annotated `meshlet.io/proxy: injected` is meshed and
gets the SPIFFE identity of its service account.

In Kubernetes mode a Service's endpoints come from its EndpointSlices instead
(`endpointslice.py`): as soon as one slice names the Service, the slices
decide and the selector is not evaluated.

Lookups scan the (small, local-mode) tables: fine for tens of services and
hundreds of pods, and always consistent.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .address import Address, AddressSet
from .endpointslice import is_meshed, service_of, slice_addresses
from .targets import ExternalTarget, IpTarget, ServiceTarget, Target

MESHED_ANNOTATION = "meshlet.io/proxy"
MESHED_VALUE = "injected"
SERVICE, POD, ENDPOINT_SLICE = "Service", "Pod", "EndpointSlice"
KINDS = frozenset({SERVICE, POD, ENDPOINT_SLICE})

Key = tuple[str, str]  # (namespace, name)


def _key(resource: Any) -> Key:
    return (resource.metadata.namespace or "default", resource.metadata.name)


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


class EndpointIndex:
    """Services and Pods by (namespace, name); resolves targets to address sets."""

    def __init__(self, trust_domain: str) -> None:
        self.trust_domain = trust_domain
        self._services: dict[Key, Any] = {}
        self._pods: dict[Key, Any] = {}
        self._slices: dict[Key, dict[str, Any]] = {}
        """(namespace, service name) -> slice name -> EndpointSlice."""

    def __repr__(self) -> str:
        n = sum(len(v) for v in self._slices.values())
        return f"<EndpointIndex services={len(self._services)} pods={len(self._pods)} slices={n}>"

    def replace(self, services: Iterable[Any], pods: Iterable[Any], slices: Iterable[Any] = ()) -> None:
        self._services = {_key(s): s for s in services}
        self._pods = {_key(p): p for p in pods}
        self._slices = {}
        for endpoint_slice in slices:
            self._upsert_slice(endpoint_slice)

    def upsert(self, resource: Any) -> None:
        if resource.kind == ENDPOINT_SLICE:
            self._delete_slice(resource)  # its service label may have changed
            self._upsert_slice(resource)
            return
        self._table(resource.kind)[_key(resource)] = resource

    def delete(self, resource: Any) -> None:
        if resource.kind == ENDPOINT_SLICE:
            self._delete_slice(resource)
            return
        self._table(resource.kind).pop(_key(resource), None)

    def _upsert_slice(self, endpoint_slice: Any) -> None:
        service = service_of(endpoint_slice)
        if service is not None:
            namespace, name = _key(endpoint_slice)
            self._slices.setdefault((namespace, service), {})[name] = endpoint_slice

    def _delete_slice(self, endpoint_slice: Any) -> None:
        namespace, name = _key(endpoint_slice)
        for key in [k for k, v in self._slices.items() if k[0] == namespace and name in v]:
            del self._slices[key][name]
            if not self._slices[key]:
                del self._slices[key]

    def slices(self, namespace: str, service: str) -> list[Any]:
        """The EndpointSlices of a Service (empty: none, its selector decides)."""
        return list(self._slices.get((namespace, service), {}).values())

    def _table(self, kind: str) -> dict[Key, Any]:
        if kind == SERVICE:
            return self._services
        if kind == POD:
            return self._pods
        raise ValueError(f"EndpointIndex does not track kind {kind!r}")

    # === resolution ===

    def resolve(self, target: Target) -> AddressSet | None:
        """Endpoints of `target`; None when it is not a service (or pod) of the mesh."""
        if isinstance(target, ServiceTarget):
            service = self._services.get((target.namespace, target.name))
            return None if service is None else self._service_endpoints(service, target.port)
        if isinstance(target, IpTarget):
            service = self.service_by_ip(target.ip)
            if service is not None:
                return self._service_endpoints(service, target.port)
            pod = self.pod_by_ip(target.ip)
            if pod is not None:
                address = self._address(pod, target.port)
                return AddressSet.of([address], {"dst_namespace": address.namespace})
            return None
        if isinstance(target, ExternalTarget):
            return None
        raise TypeError(f"unknown target {target!r}")

    def service(self, namespace: str, name: str) -> Any | None:
        return self._services.get((namespace, name))

    def pod(self, namespace: str, name: str) -> Any | None:
        return self._pods.get((namespace, name))

    def service_by_ip(self, ip: str) -> Any | None:
        for service in self._services.values():
            if service.spec.cluster_ip == ip:
                return service
        return None

    def pod_by_ip(self, ip: str) -> Any | None:
        """The running pod with this IP (ready or not: the caller named it directly)."""
        for pod in self._pods.values():
            status = pod.status
            if status is not None and status.pod_ip == ip and status.phase == "Running":
                return pod
        return None

    def _service_endpoints(self, service: Any, port: int) -> AddressSet:
        namespace, name = _key(service)
        labels = {"dst_service": name, "dst_namespace": namespace}
        slices = self._slices.get((namespace, name))
        if slices:
            found = slice_addresses(service, port, slices.values(), self.pod,
                                    lambda ns, sa: spiffe_id(self.trust_domain, ns, sa))
            return AddressSet.of(found, labels)
        selector = service.spec.selector
        if not selector:
            return AddressSet.of([], labels)
        service_port = next((p for p in service.spec.ports if p.port == port), None)
        addresses = []
        for (pod_ns, _), pod in self._pods.items():
            if pod_ns != namespace or not _ready(pod):
                continue
            pod_labels = pod.metadata.labels
            if any(pod_labels.get(k) != v for k, v in selector.items()):
                continue
            target_port = _target_port(service_port, port, pod)
            if target_port is not None:
                addresses.append(self._address(pod, target_port))
        return AddressSet.of(addresses, labels)

    def selected(self, namespace: str, selector: dict[str, str], port: int) -> list[Address]:
        """Ready pods of `namespace` whose labels match `selector` (ServiceEntry workloadSelector), on `port`."""
        return [self._address(pod, port) for (pod_ns, _), pod in self._pods.items()
                if pod_ns == namespace and _ready(pod) and all(pod.metadata.labels.get(k) == v
                                                               for k, v in selector.items())]

    def _address(self, pod: Any, port: int) -> Address:
        namespace, name = _key(pod)
        service_account = pod.spec.service_account_name or "default"
        meshed = is_meshed(pod)
        return Address(
            ip=pod.status.pod_ip,
            port=port,
            pod=name,
            namespace=namespace,
            service_account=service_account,
            identity=spiffe_id(self.trust_domain, namespace, service_account) if meshed else None,
            labels=pod.metadata.labels,
        )


def _ready(pod: Any) -> bool:
    status = pod.status
    return status is not None and status.phase == "Running" and bool(status.ready) and bool(status.pod_ip)


def _target_port(service_port: Any | None, port: int, pod: Any) -> int | None:
    """The pod port a Service port maps to; None when the pod lacks the named port."""
    if service_port is None:
        return port  # not a declared port: use it as is (like Linkerd)
    target = service_port.target_port
    if target is None:
        return int(service_port.port)
    if isinstance(target, int):
        return target
    for container in pod.spec.containers:
        for container_port in container.ports:
            if container_port.name == target:
                return int(container_port.container_port)
    return None
