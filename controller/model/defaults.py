"""Kubernetes-style defaults applied to every resource before it is stored.

Pure and idempotent: `default(default(r)) == default(r)`. Defaults that need
the store (clusterIP allocation) are store defaulters, not here.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from meshlet.controller.model.core import (
    Deployment,
    Pod,
    PodSpec,
    PodTemplateSpec,
    Service,
    ServicePort,
)
from meshlet.controller.model.meta import Resource

DEFAULT_NAMESPACE = "default"

R = TypeVar("R", bound=Resource)


def default_resource(resource: R) -> R:
    """Namespace "default" for namespaced kinds; per-kind spec defaults."""
    if resource.namespaced and not resource.metadata.namespace:
        resource = resource.with_meta(namespace=DEFAULT_NAMESPACE)
    elif not resource.namespaced and resource.metadata.namespace is not None:
        resource = resource.with_meta(namespace=None)
    if resource.spec is None:  # e.g. a document only naming what to delete
        return resource  # type: ignore[return-value]
    if isinstance(resource, Service):
        ports = tuple(_default_port(p) for p in resource.spec.ports)
        if ports != resource.spec.ports:
            resource = replace(resource, spec=replace(resource.spec, ports=ports))
    elif isinstance(resource, Pod):
        spec = _default_pod_spec(resource.spec)
        if spec != resource.spec:
            resource = replace(resource, spec=spec)
    elif isinstance(resource, Deployment):
        tpl = resource.spec.template
        spec = _default_pod_spec(tpl.spec)
        if spec != tpl.spec:
            resource = replace(resource, spec=replace(resource.spec, template=PodTemplateSpec(tpl.metadata, spec)))
    return resource  # type: ignore[return-value]


def _default_port(port: ServicePort) -> ServicePort:
    if port.target_port is None:
        return replace(port, target_port=port.port)
    return port


def _default_pod_spec(spec: PodSpec) -> PodSpec:
    if spec.service_account_name is None:
        return replace(spec, service_account_name="default")
    return spec
