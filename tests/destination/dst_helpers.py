"""Builders of Services and Pods, and a recording listener, for destination tests."""
from __future__ import annotations

from meshlet.controller.model import (
    Container,
    ContainerPort,
    ObjectMeta,
    Pod,
    PodSpec,
    PodStatus,
    Service,
    ServicePort,
    ServiceSpec,
)

TD = "cluster.local"


def service(name: str, ns: str = "shop", *, selector: dict[str, str] | None = None, port: int = 80,
            target_port: int | str | None = None, cluster_ip: str | None = None, rv: int = 0) -> Service:
    return Service(
        metadata=ObjectMeta(name=name, namespace=ns, resource_version=rv),
        spec=ServiceSpec(
            selector={"app": name} if selector is None else selector,
            ports=(ServicePort(port=port, name="http", target_port=target_port),),
            cluster_ip=cluster_ip,
        ),
    )


def pod(name: str, ip: str, ns: str = "shop", *, app: str = "web", ready: bool = True, phase: str = "Running",
        meshed: bool = True, sa: str = "web", labels: dict[str, str] | None = None,
        ports: tuple[tuple[str, int], ...] = (("http", 8080),), rv: int = 0) -> Pod:
    return Pod(
        metadata=ObjectMeta(
            name=name, namespace=ns, resource_version=rv,
            labels={"app": app, **(labels or {})},
            annotations={"meshlet.io/proxy": "injected"} if meshed else {},
        ),
        spec=PodSpec(
            containers=(Container(name="app", ports=tuple(ContainerPort(container_port=p, name=n) for n, p in ports)),),
            service_account_name=sa,
        ),
        status=PodStatus(phase=phase, pod_ip=ip, ready=ready),  # type: ignore[arg-type]
    )


class Recorder:
    """A listener that records what it is told as plain tuples."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def add(self, addresses) -> None:
        self.events.append(("add", sorted(f"{a.ip}:{a.port}" for a in addresses.addresses.values())))

    def remove(self, addresses) -> None:
        self.events.append(("remove", sorted(f"{a.ip}:{a.port}" for a in addresses.addresses.values())))

    def no_endpoints(self, exists: bool, blocked: bool = False) -> None:
        self.events.append(("blocked", exists) if blocked else ("none", exists))

    def take(self) -> list[tuple]:
        out, self.events = self.events, []
        return out
