"""What the runtime needs from the store's resources, as small frozen dataclasses.

The store hands out typed resources; `meshlet.controller.model.convert.to_obj`
turns any of them back into the plain Kubernetes-shaped mapping, which is what
these `from_obj` readers take. Keeping the runtime's view this narrow means it
depends on a few well-known Kubernetes fields only, not on the whole model.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SpecError(ValueError):
    """A resource cannot be run locally (message names the resource and the field)."""


def _labels(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def _meta(obj: Mapping[str, Any]) -> tuple[str, str, dict[str, str], dict[str, str]]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or "default"), str(meta.get("name") or ""),
            _labels(meta.get("labels")), _labels(meta.get("annotations")))


@dataclass(frozen=True)
class NamespaceSpec:
    name: str
    labels: dict[str, str]

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> NamespaceSpec:
        _, name, labels, _ = _meta(obj)
        return cls(name=name, labels=labels)


@dataclass(frozen=True)
class ContainerPort:
    port: int
    name: str = ""
    protocol: str = "tcp"


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str = ""
    field_path: str = ""
    """`valueFrom.fieldRef.fieldPath` (metadata.name, metadata.namespace, status.podIP, spec.serviceAccountName)."""


FIELD_PATHS = ("metadata.name", "metadata.namespace", "status.podIP", "spec.serviceAccountName")


@dataclass(frozen=True)
class Probe:
    """A readiness probe (httpGet or tcpSocket; exec probes are not run locally)."""

    kind: str
    """"http" or "tcp"."""
    port: int
    path: str = "/"
    failure_threshold: int = 3


@dataclass(frozen=True)
class Container:
    name: str
    argv: tuple[str, ...]
    env: tuple[EnvVar, ...]
    ports: tuple[ContainerPort, ...]
    working_dir: str = ""
    readiness: Probe | None = None
    """None: ready once every declared TCP port listens."""


@dataclass(frozen=True)
class DeploymentSpec:
    namespace: str
    name: str
    replicas: int
    labels: dict[str, str]
    """Pod template labels (what Service selectors match)."""
    annotations: dict[str, str]
    service_account: str
    containers: tuple[Container, ...]
    template_hash: str
    """Changes whenever the pod template changes: pods of an older hash are replaced."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> DeploymentSpec:
        ns, name, _, _ = _meta(obj)
        where = f"Deployment {ns}/{name}"
        spec = obj.get("spec") or {}
        template = spec.get("template") or {}
        tmeta = template.get("metadata") or {}
        pspec = template.get("spec") or {}
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or replicas < 0:
            raise SpecError(f"{where}: spec.replicas must be a non-negative integer, got {replicas!r}")
        raw_containers = pspec.get("containers") or []
        if not raw_containers:
            raise SpecError(f"{where}: spec.template.spec.containers is empty")
        containers = tuple(_container(where, i, c) for i, c in enumerate(raw_containers))
        canonical = json.dumps(template, sort_keys=True, default=str)
        return cls(namespace=ns, name=name, replicas=replicas, labels=_labels(tmeta.get("labels")),
                   annotations=_labels(tmeta.get("annotations")),
                   service_account=str(pspec.get("serviceAccountName") or pspec.get("serviceAccount") or "default"),
                   containers=containers, template_hash=hashlib.sha256(canonical.encode()).hexdigest()[:10])


def _container(where: str, index: int, c: Mapping[str, Any]) -> Container:
    name = str(c.get("name") or f"c{index}")
    path = f"{where}: spec.template.spec.containers[{index}] ({name})"
    command = tuple(str(a) for a in (c.get("command") or []))
    if not command:
        raise SpecError(f"{path}: command is empty; local mode runs command+args (there is no image entrypoint)")
    argv = command + tuple(str(a) for a in (c.get("args") or []))
    env: list[EnvVar] = []
    for e in c.get("env") or []:
        field_path = (((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")) or ""
        if field_path and field_path not in FIELD_PATHS:
            raise SpecError(f"{path}: env {e.get('name')}: unsupported fieldPath {field_path!r} (supported: {FIELD_PATHS})")
        env.append(EnvVar(name=str(e.get("name")), value="" if e.get("value") is None else str(e.get("value")),
                          field_path=field_path))
    ports = []
    for p in c.get("ports") or []:
        port = p.get("containerPort")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise SpecError(f"{path}: ports: containerPort must be 1..65535, got {port!r}")
        ports.append(ContainerPort(port=port, name=str(p.get("name") or ""),
                                   protocol=str(p.get("protocol") or "TCP").lower()))
    return Container(name=name, argv=argv, env=tuple(env), ports=tuple(ports),
                     working_dir=str(c.get("workingDir") or ""),
                     readiness=_probe(path, c.get("readinessProbe"), ports))


def _probe(path: str, raw: Any, ports: list[ContainerPort]) -> Probe | None:
    if not raw:
        return None
    threshold = raw.get("failureThreshold", 3)
    if not isinstance(threshold, int) or threshold < 1:
        raise SpecError(f"{path}: readinessProbe.failureThreshold must be a positive integer, got {threshold!r}")
    for key, kind in (("httpGet", "http"), ("tcpSocket", "tcp")):
        action = raw.get(key)
        if not action:
            continue
        port = action.get("port")
        if isinstance(port, str) and not port.isdigit():
            named = [p.port for p in ports if p.name == port]
            if not named:
                raise SpecError(f"{path}: readinessProbe.{key}.port {port!r} names no container port")
            port = named[0]
        if port is None or not 0 < int(port) < 65536:
            raise SpecError(f"{path}: readinessProbe.{key}.port must be 1..65535 or a port name, got {port!r}")
        return Probe(kind=kind, port=int(port), path=str(action.get("path") or "/"), failure_threshold=threshold)
    return None  # exec probes: readiness falls back to the declared ports


@dataclass(frozen=True)
class ServicePort:
    port: int
    target_port: int | str
    protocol: str = "tcp"
    name: str = ""


@dataclass(frozen=True)
class ServiceSpec:
    namespace: str
    name: str
    cluster_ip: ipaddress.IPv4Address | None
    selector: dict[str, str]
    ports: tuple[ServicePort, ...]

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> ServiceSpec:
        ns, name, _, _ = _meta(obj)
        spec = obj.get("spec") or {}
        raw_ip = spec.get("clusterIP") or spec.get("cluster_ip")
        ip: ipaddress.IPv4Address | None = None
        if raw_ip and raw_ip != "None":
            try:
                ip = ipaddress.IPv4Address(str(raw_ip))
            except ValueError:
                raise SpecError(f"Service {ns}/{name}: spec.clusterIP {raw_ip!r} is not an IPv4 address") from None
        ports = []
        for p in spec.get("ports") or []:
            port = p.get("port")
            if not isinstance(port, int):
                raise SpecError(f"Service {ns}/{name}: ports: port must be an integer, got {port!r}")
            target = p.get("targetPort")
            protocol = str(p.get("protocol") or "TCP").lower()
            if protocol not in ("tcp", "udp"):
                raise SpecError(f"Service {ns}/{name}: port {port}: protocol {protocol.upper()} is not supported "
                                "in local mode (TCP, UDP)")
            ports.append(ServicePort(port=port, target_port=port if target in (None, "") else target,
                                     protocol=protocol, name=str(p.get("name") or "")))
        return cls(namespace=ns, name=name, cluster_ip=ip, selector=_labels(spec.get("selector")),
                   ports=tuple(ports))

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        return (namespace == self.namespace and bool(self.selector)
                and all(labels.get(k) == v for k, v in self.selector.items()))
