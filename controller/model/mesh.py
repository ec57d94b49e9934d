"""meshlet.io/v1alpha1 MeshConfig: mesh-wide settings (cluster-scoped, one object named "default").

Istio keeps these in the `istio` ConfigMap of istio-system (`meshConfig`); a
typed kind is simpler for meshlet: validated like every other resource,
watched like every other resource.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from meshlet.controller.model.istio_http_actions import HTTPRetry
from meshlet.controller.model.istio_networking import (
    OutboundTrafficPolicy,
    ProxyConfigSpec,
)
from meshlet.controller.model.meta import Resource, check_subdomain

MESH_CONFIG_NAME = "default"
ROOT_NAMESPACE = "istio-system"


@dataclass(frozen=True)
class MeshConfigSpec:
    outbound_traffic_policy: OutboundTrafficPolicy = field(default_factory=OutboundTrafficPolicy)
    """ALLOW_ANY (Istio's default) or REGISTRY_ONLY."""
    default_config: ProxyConfigSpec | None = None
    trust_domain: str | None = None
    root_namespace: str = ROOT_NAMESPACE
    default_http_retry_policy: HTTPRetry | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.trust_domain is not None:
            problem = check_subdomain(self.trust_domain, "trust domain")
            if problem:
                yield "trustDomain", problem


@dataclass(frozen=True, kw_only=True)
class MeshConfig(Resource):
    api_version: ClassVar[str] = "meshlet.io/v1alpha1"
    kind: ClassVar[str] = "MeshConfig"
    namespaced: ClassVar[bool] = False

    spec: MeshConfigSpec = field(default_factory=MeshConfigSpec)
    status: Any = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.metadata.name != MESH_CONFIG_NAME:
            yield "metadata.name", f"the MeshConfig must be named {MESH_CONFIG_NAME!r}, got {self.metadata.name!r}"
