"""Kubernetes core (v1) and apps/v1 kinds: Namespace, Service, ServiceAccount, Pod, Deployment.

Only the fields meshlet uses or that ordinary manifests (Istio's Bookinfo) carry
are modelled; parts meshlet passes through untouched (volumes, securityContext,
probes) are typed `Any`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from meshlet.controller.model.convert import yfield
from meshlet.controller.model.meta import (
    LabelSelector,
    ObjectMeta,
    Resource,
    TemplateMeta,
    check_label,
)

Protocol = Literal["TCP", "UDP", "SCTP"]


def _check_port(value: int, what: str = "port") -> str | None:
    if not 1 <= value <= 65535:
        return f"{what} must be between 1 and 65535, got {value}"
    return None


# === Namespace ===

@dataclass(frozen=True)
class NamespaceSpec:
    finalizers: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Namespace(Resource):
    api_version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "Namespace"
    namespaced: ClassVar[bool] = False

    spec: NamespaceSpec = field(default_factory=NamespaceSpec)
    status: Any = None

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = check_label(self.metadata.name, "namespace name")
        if problem:
            yield "metadata.name", problem


# === ServiceAccount ===

@dataclass(frozen=True, kw_only=True)
class ServiceAccount(Resource):
    api_version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "ServiceAccount"

    automount_service_account_token: bool | None = None
    secrets: tuple[Any, ...] = ()
    image_pull_secrets: tuple[Any, ...] = ()


# === Service ===

@dataclass(frozen=True)
class ServicePort:
    port: int
    name: str | None = None
    target_port: int | str | None = None
    """Container port number or name; defaults to `port`."""
    protocol: Protocol = "TCP"
    app_protocol: str | None = None
    node_port: int | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = _check_port(self.port)
        if problem:
            yield "port", problem
        if isinstance(self.target_port, int):
            problem = _check_port(self.target_port, "targetPort")
            if problem:
                yield "targetPort", problem
        elif isinstance(self.target_port, str):
            problem = check_label(self.target_port, "targetPort name")
            if problem:
                yield "targetPort", problem
        if self.name is not None:
            problem = check_label(self.name, "port name")
            if problem:
                yield "name", problem


@dataclass(frozen=True)
class ServiceSpec:
    selector: dict[str, str] = field(default_factory=dict)
    ports: tuple[ServicePort, ...] = ()
    cluster_ip: str | None = yfield("clusterIP", default=None)
    """Virtual IP; allocated by the store on create, "None" for a headless Service."""
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    external_name: str | None = None
    session_affinity: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        names = [p.name for p in self.ports]
        if len(self.ports) > 1 and any(n is None for n in names):
            yield "ports", "every port needs a name when a Service has more than one port"
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name is not None and name in seen:
                yield f"ports[{i}].name", f"duplicate port name {name!r}"
            if name is not None:
                seen.add(name)


@dataclass(frozen=True, kw_only=True)
class Service(Resource):
    api_version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "Service"

    spec: ServiceSpec = field(default_factory=ServiceSpec)
    status: Any = None

    def validate(self) -> Iterable[tuple[str, str]]:
        # the name becomes a host name (<svc>.<ns>.svc.cluster.local): a DNS-1035 label
        name = self.metadata.name
        problem = check_label(name, "service name")
        if problem is None and not name[0].isalpha():
            problem = f"service name {name!r} is invalid: it must start with a letter"
        if problem:
            yield "metadata.name", problem


# === Pod ===

@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None
    value_from: Any = None


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    name: str | None = None
    protocol: Protocol = "TCP"

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = _check_port(self.container_port, "containerPort")
        if problem:
            yield "containerPort", problem


Quantity = str | int | float


@dataclass(frozen=True)
class ResourceRequirements:
    requests: dict[str, Quantity] = field(default_factory=dict)
    limits: dict[str, Quantity] = field(default_factory=dict)


@dataclass(frozen=True)
class Container:
    name: str
    image: str | None = None
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    resources: ResourceRequirements | None = None
    working_dir: str | None = None
    volume_mounts: tuple[Any, ...] = ()
    security_context: Any = None
    readiness_probe: Any = None
    liveness_probe: Any = None

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = check_label(self.name, "container name")
        if problem:
            yield "name", problem


@dataclass(frozen=True)
class PodSpec:
    containers: tuple[Container, ...] = ()
    service_account_name: str | None = None
    init_containers: tuple[Container, ...] = ()
    volumes: tuple[Any, ...] = ()
    restart_policy: Literal["Always", "OnFailure", "Never"] | None = None
    termination_grace_period_seconds: int | None = None
    security_context: Any = None
    node_name: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if not self.containers:
            yield "containers", "at least one container is required"
        seen: set[str] = set()
        for i, c in enumerate(self.containers + self.init_containers):
            if c.name in seen:
                yield f"containers[{i}].name", f"duplicate container name {c.name!r}"
            seen.add(c.name)


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    ready: bool = False
    restart_count: int = 0
    state: str | None = None
    """running | waiting | terminated (free text reason in PodStatus.reason)."""


@dataclass(frozen=True)
class PodStatus:
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] = "Pending"
    pod_ip: str | None = yfield("podIP", default=None)
    ready: bool = False
    container_statuses: tuple[ContainerStatus, ...] = ()
    message: str | None = None
    reason: str | None = None
    """Short machine-readable reason shown by `get pods` instead of the phase (e.g. CrashLoopBackOff)."""
    start_time: str | None = None


@dataclass(frozen=True, kw_only=True)
class Pod(Resource):
    api_version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "Pod"

    spec: PodSpec = field(default_factory=PodSpec)
    status: PodStatus | None = None


# === Deployment ===

@dataclass(frozen=True)
class PodTemplateSpec:
    metadata: TemplateMeta = field(default_factory=TemplateMeta)
    spec: PodSpec = field(default_factory=PodSpec)


@dataclass(frozen=True)
class DeploymentSpec:
    selector: LabelSelector
    template: PodTemplateSpec
    replicas: int = 1
    strategy: Any = None
    revision_history_limit: int | None = None
    min_ready_seconds: int | None = None
    progress_deadline_seconds: int | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.replicas < 0:
            yield "replicas", f"must be 0 or more, got {self.replicas}"
        if not self.selector.match_labels:
            yield "selector.matchLabels", "must not be empty"
        elif not self.selector.matches(self.template.metadata.labels):
            yield "template.metadata.labels", "do not match selector.matchLabels"


@dataclass(frozen=True)
class DeploymentStatus:
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    observed_generation: int = 0


@dataclass(frozen=True, kw_only=True)
class Deployment(Resource):
    api_version: ClassVar[str] = "apps/v1"
    kind: ClassVar[str] = "Deployment"

    spec: DeploymentSpec
    status: DeploymentStatus | None = None


# === WorkloadToken (meshlet-internal) ===

@dataclass(frozen=True)
class WorkloadTokenSpec:
    service_account: str
    pod: str
    token_sha256: str
    """Hex SHA-256 of the token the runtime wrote to pods/<ns>/<pod>/token."""

    def validate(self) -> Iterable[tuple[str, str]]:
        if len(self.token_sha256) != 64 or any(c not in "0123456789abcdef" for c in self.token_sha256):
            yield "tokenSha256", "must be 64 lower-case hex digits"


@dataclass(frozen=True, kw_only=True)
class WorkloadToken(Resource):
    """Binds a pod's workload token to its namespace and service account (read by identity)."""

    api_version: ClassVar[str] = "meshlet.io/v1alpha1"
    kind: ClassVar[str] = "WorkloadToken"

    spec: WorkloadTokenSpec


__all__ = [
    "Container",
    "ContainerPort",
    "ContainerStatus",
    "Deployment",
    "DeploymentSpec",
    "DeploymentStatus",
    "EnvVar",
    "Namespace",
    "NamespaceSpec",
    "ObjectMeta",
    "Pod",
    "PodSpec",
    "PodStatus",
    "PodTemplateSpec",
    "ResourceRequirements",
    "Service",
    "ServiceAccount",
    "ServicePort",
    "ServiceSpec",
    "WorkloadToken",
    "WorkloadTokenSpec",
]
