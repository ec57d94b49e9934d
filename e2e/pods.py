"""Pods as the e2e code sees them: parsed from `meshlet get pods -o json` (or kubectl's) output.

Pure code: `parse_pods` takes the JSON text, `workload_of` names a pod's
Deployment, `group_by_workload` builds the table's rows.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PROXY_ANNOTATION = "meshlet.io/proxy"
DEPLOYMENT_ANNOTATION = "meshlet.io/deployment"
_GENERATED_SUFFIX = re.compile(r"^[a-z0-9]{4,10}$")


class PodListError(ValueError):
    """The pod listing is not the JSON shape expected."""


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    ip: str
    phase: str
    ready: bool
    meshed: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    """The pod's Deployment from the local runtime's annotation or ownerReferences, when present."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _ready(status: Mapping[str, Any]) -> bool:
    if isinstance(status.get("ready"), bool):
        return bool(status["ready"])
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            return str(cond.get("status")) == "True"
    statuses = status.get("containerStatuses") or []
    return bool(statuses) and all(isinstance(c, Mapping) and c.get("ready") for c in statuses)


def _meshed(meta: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    annotations = meta.get("annotations") or {}
    if annotations.get(PROXY_ANNOTATION) == "injected" or annotations.get("linkerd.io/proxy-version"):
        return True
    if "sidecar.istio.io/status" in annotations:
        return True
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    return any(isinstance(c, Mapping) and c.get("name") in ("istio-proxy", "linkerd-proxy", "meshlet-proxy")
               for c in containers)


def _owner(meta: Mapping[str, Any]) -> str:
    deployment = (meta.get("annotations") or {}).get(DEPLOYMENT_ANNOTATION)
    if deployment:
        return str(deployment)
    for ref in meta.get("ownerReferences") or []:
        if not isinstance(ref, Mapping):
            continue
        if ref.get("kind") == "Deployment":
            return str(ref.get("name") or "")
        if ref.get("kind") == "ReplicaSet":
            name = str(ref.get("name") or "")
            head, _, tail = name.rpartition("-")
            return head if head and _GENERATED_SUFFIX.match(tail) else name
    return ""


def pod_from_obj(obj: Mapping[str, Any]) -> PodInfo:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if not isinstance(meta, Mapping) or not meta.get("name"):
        raise PodListError(f"pod without metadata.name: {str(obj)[:200]}")
    return PodInfo(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta["name"]),
        ip=str(status.get("podIP") or ""),
        phase=str(status.get("phase") or ""),
        ready=_ready(status),
        meshed=_meshed(meta, spec, status),
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        owner=_owner(meta),
    )


def parse_pods(text: str) -> list[PodInfo]:
    """Pods from a JSON list, a `{"items": [...]}` List, or a single Pod object."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PodListError(f"pod listing is not JSON: {exc}") from None
    if isinstance(data, Mapping) and "items" in data:
        data = data["items"]
    elif isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise PodListError(f"pod listing is neither a list nor a List object: {type(data).__name__}")
    return [pod_from_obj(item) for item in data if isinstance(item, Mapping)]


def parse_names(text: str) -> list[str]:
    """`metadata.name` of every object in a JSON List (e.g. `meshlet get deployments -o json`)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PodListError(f"listing is not JSON: {exc}") from None
    items = data.get("items", [data]) if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise PodListError(f"listing is neither a list nor a List object: {type(items).__name__}")
    return [str(i["metadata"]["name"]) for i in items
            if isinstance(i, Mapping) and isinstance(i.get("metadata"), Mapping) and i["metadata"].get("name")]


def workload_of(pod: PodInfo, deployments: Iterable[str] = ()) -> str:
    """The Deployment a pod belongs to.

    Prefers ownerReferences, then the longest known Deployment name that
    prefixes the pod name, then strips Kubernetes-style generated suffixes
    (`<deploy>-<hash>-<rand>`).
    """
    if pod.owner:
        return pod.owner
    candidates = [d for d in deployments if pod.name.startswith(d + "-") or pod.name == d]
    if candidates:
        return max(candidates, key=len)
    parts = pod.name.split("-")
    template_hash = pod.labels.get("pod-template-hash")
    if template_hash and template_hash in parts:
        return "-".join(parts[: parts.index(template_hash)]) or pod.name
    stripped = 0
    while len(parts) > 1 and stripped < 2 and _GENERATED_SUFFIX.match(parts[-1]) and any(
            ch.isdigit() for ch in parts[-1]) and not re.fullmatch(r"v\d+", parts[-1]):
        parts.pop()
        stripped += 1
    return "-".join(parts)


def group_by_workload(pods: Sequence[PodInfo], deployments: Iterable[str] = ()) -> dict[str, list[PodInfo]]:
    known = list(deployments)
    groups: dict[str, list[PodInfo]] = {}
    for pod in pods:
        groups.setdefault(workload_of(pod, known), []).append(pod)
    return groups
