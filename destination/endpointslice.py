"""Kubernetes mode: a Service's endpoints from its EndpointSlices (discovery.k8s.io/v1), pure.

A Service's slices carry the label `kubernetes.io/service-name: <service>`; each
lists ports by the Service port's *name* (an unnamed single port is "") with the
number traffic goes to (the resolved targetPort), and endpoints with their
addresses, conditions and a targetRef to the Pod. The translation:

- the Service port requested (by number) is matched to the slice port of the
  same name; a slice without that port contributes nothing. A port the Service
  does not declare is used as is (as in local mode);
- an endpoint counts when `conditions.ready` is not false (unset = ready, as
  Kubernetes says); its first address is the endpoint's address; FQDN slices
  are skipped (a Service's pods have IPs);
- the targetRef's Pod (when the index knows it) gives labels, the service
  account and, when it is meshed (`meshlet.io/proxy: injected` or the
  injector's `meshlet.io/proxy-version` annotation), the SPIFFE identity; an
  endpoint without a known Pod has no identity (plaintext, like an unmeshed pod);
- the same address in two slices (a slice being replaced) counts once.

The index uses slices for a Service as soon as one exists, and its pod
selector otherwise (local mode has no slices).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .address import Address

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MESHED_ANNOTATIONS: Mapping[str, str | None] = {"meshlet.io/proxy": "injected", "meshlet.io/proxy-version": None}
"""Annotations that mark a meshed pod: (key, value), value None = any value."""

PodLookup = Callable[[str, str], Any | None]
"""(namespace, name) -> the Pod, or None when unknown."""


def service_of(endpoint_slice: Any) -> str | None:
    """The name of the Service a slice belongs to (its `kubernetes.io/service-name` label)."""
    return (endpoint_slice.metadata.labels or {}).get(SERVICE_NAME_LABEL) or None


def is_meshed(pod: Any) -> bool:
    annotations = pod.metadata.annotations or {}
    return any(key in annotations and (value is None or annotations[key] == value)
               for key, value in MESHED_ANNOTATIONS.items())


def slice_port(service: Any, port: int, endpoint_slice: Any) -> int | None:
    """The endpoint port of Service port `port` in this slice; None when the slice lacks it."""
    service_port = next((p for p in service.spec.ports if p.port == port), None)
    if service_port is None:
        return port  # not a declared port: use it as is
    want = service_port.name or ""
    for p in endpoint_slice.ports or ():
        if (p.name or "") == want and (p.protocol or "TCP") == (service_port.protocol or "TCP"):
            return int(p.port) if p.port is not None else None
    return None


def slice_addresses(
    service: Any,
    port: int,
    slices: Iterable[Any],
    pod: PodLookup,
    identity_of: Callable[[str, str], str],
) -> list[Address]:
    """Ready endpoints of `service`'s port `port` across its slices, sorted by (ip, port).

    `identity_of(namespace, service_account)` builds the SPIFFE id of a meshed pod.
    """
    namespace = service.metadata.namespace or "default"
    found: dict[tuple[str, int], Address] = {}
    for endpoint_slice in sorted(slices, key=lambda s: s.metadata.name):
        if getattr(endpoint_slice, "address_type", "IPv4") == "FQDN":
            continue
        target_port = slice_port(service, port, endpoint_slice)
        if target_port is None:
            continue
        for endpoint in endpoint_slice.endpoints or ():
            conditions = endpoint.conditions
            if (conditions is not None and conditions.ready is False) or not endpoint.addresses:
                continue
            address = _address(endpoint, namespace, target_port, pod, identity_of)
            found.setdefault(address.id, address)
    return [found[k] for k in sorted(found)]


def _address(endpoint: Any, namespace: str, port: int, pod: PodLookup,
             identity_of: Callable[[str, str], str]) -> Address:
    ip = endpoint.addresses[0]
    ref = endpoint.target_ref
    if ref is None or (ref.kind or "Pod") != "Pod" or not ref.name:
        return Address(ip=ip, port=port, namespace=namespace)
    pod_ns = ref.namespace or namespace
    found = pod(pod_ns, ref.name)
    if found is None:
        return Address(ip=ip, port=port, pod=ref.name, namespace=pod_ns)
    service_account = found.spec.service_account_name or "default"
    return Address(
        ip=ip,
        port=port,
        pod=ref.name,
        namespace=pod_ns,
        service_account=service_account,
        identity=identity_of(pod_ns, service_account) if is_meshed(found) else None,
        labels=found.metadata.labels,
    )
