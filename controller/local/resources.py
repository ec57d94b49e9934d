"""Store resources the runtime writes: Pod (with status), WorkloadToken, Deployment status."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from meshlet.controller.model import (
    Container,
    ContainerPort,
    ContainerStatus,
    DeploymentStatus,
    EnvVar,
    ObjectMeta,
    Pod,
    PodSpec,
    PodStatus,
    WorkloadToken,
    WorkloadTokenSpec,
)

if TYPE_CHECKING:
    from meshlet.controller.local.pod import LocalPod
    from meshlet.controller.local.spec import DeploymentSpec

PROXY_ANNOTATION = "meshlet.io/proxy"
DEPLOYMENT_ANNOTATION = "meshlet.io/deployment"
TEMPLATE_HASH_LABEL = "pod-template-hash"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_resource(pod: LocalPod) -> Pod:
    spec = pod.deploy
    annotations = dict(spec.annotations) | {DEPLOYMENT_ANNOTATION: spec.name}
    if pod.meshed:
        annotations[PROXY_ANNOTATION] = "injected"
    labels = dict(spec.labels) | {TEMPLATE_HASH_LABEL: spec.template_hash}
    containers = tuple(
        Container(name=c.name, command=c.argv,
                  env=tuple(EnvVar(name=e.name, value=e.value) for e in c.env if not e.field_path),
                  ports=tuple(ContainerPort(container_port=p.port, name=p.name or None, protocol=p.protocol.upper())  # type: ignore[arg-type]
                              for p in c.ports))
        for c in spec.containers)
    if pod.meshed:  # like an injected Kubernetes pod: the sidecar is a container of the spec
        containers = (Container(name="meshlet-proxy", command=pod.settings.proxy_argv), *containers)
    statuses = [ContainerStatus(name=cs.name, ready=cs.ready, restart_count=cs.restarts,
                                state="running" if cs.running else "waiting") for cs in pod.state.containers]
    if pod.meshed:
        statuses.insert(0, ContainerStatus(name="meshlet-proxy", ready=pod.proxy_ready,
                                           restart_count=pod.proxy_restarts(),
                                           state="running" if pod.proxy and pod.proxy.pid else "waiting"))
    status = PodStatus(phase=pod.state.phase, pod_ip=str(pod.ip), ready=pod.state.ready,  # type: ignore[arg-type]
                       container_statuses=tuple(statuses), message=pod.state.message or None,
                       start_time=pod.started_at)
    return Pod(metadata=ObjectMeta(name=pod.name, namespace=pod.namespace, labels=labels, annotations=annotations),
               spec=PodSpec(containers=containers, service_account_name=spec.service_account), status=status)


def workload_token(spec: DeploymentSpec, pod: str, sha256_hex: str) -> WorkloadToken:
    return WorkloadToken(metadata=ObjectMeta(name=pod, namespace=spec.namespace),
                         spec=WorkloadTokenSpec(service_account=spec.service_account, pod=pod, token_sha256=sha256_hex))


def deployment_status(owned: Sequence[LocalPod], updated: Sequence[LocalPod], generation: int) -> DeploymentStatus:
    ready = sum(1 for p in owned if p.state.ready)
    return DeploymentStatus(replicas=len(owned), ready_replicas=ready,
                            updated_replicas=len(updated),
                            available_replicas=ready, observed_generation=generation)


__all__ = ["PROXY_ANNOTATION", "deployment_status", "now_rfc3339", "pod_resource", "workload_token"]
