"""Kubernetes objects as the e2e kube target handles them: pure code, tested without a server.

`load_manifests` reads YAML files like `kubectl apply -f` (a file or a
directory's *.yaml), `apply_order`/`delete_order` put dependencies first
(Namespaces first on apply, last on delete), `deployment_problem` says why a
Deployment is not Available, `default_container` picks where `exec` runs,
`exit_code` reads the pods/exec status channel.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from meshlet.e2e.target import TargetError

# helm's install order (abridged): what others depend on first; unknown kinds (custom resources) last
KIND_ORDER = ("Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodDisruptionBudget", "ServiceAccount",
              "Secret", "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
              "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service",
              "DaemonSet", "Pod", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job",
              "CronJob", "IngressClass", "Ingress", "APIService", "MutatingWebhookConfiguration",
              "ValidatingWebhookConfiguration")
STDOUT, STDERR, STATUS = 1, 2, 3
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
PROXY_CONTAINERS = ("meshlet-proxy", "istio-proxy", "linkerd-proxy")


class ManifestError(TargetError):
    """A manifest file is not a list of Kubernetes objects."""

@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}" + (f" in {self.namespace}" if self.namespace else "")


def load_manifests(path: Path) -> list[dict[str, Any]]:
    """The objects of a YAML file, or of a directory's *.yaml/*.yml files in name order (like `kubectl -f`)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    elif path.exists():
        files = [path]
    else:
        raise ManifestError(f"manifest path {path} does not exist")
    docs: list[dict[str, Any]] = []
    for file in files:
        try:
            loaded = [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
        except (OSError, yaml.YAMLError) as exc:
            raise ManifestError(f"{file}: {exc}") from None
        for i, doc in enumerate(loaded):
            items = doc.get("items") if isinstance(doc, Mapping) and str(doc.get("kind", "")).endswith("List") else [doc]
            for obj in items or []:
                meta = obj.get("metadata") if isinstance(obj, Mapping) else None
                if not (isinstance(obj, Mapping) and obj.get("apiVersion") and obj.get("kind")
                        and isinstance(meta, Mapping) and meta.get("name")):
                    raise ManifestError(f"{file} document {i + 1}: not a Kubernetes object "
                                        "(apiVersion, kind and metadata.name needed)")
                docs.append(dict(obj))
    return docs


def _rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def apply_order(docs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Stable sort: Namespaces, ServiceAccounts, ... Deployments, then custom resources."""
    return sorted(docs, key=lambda d: _rank(str(d["kind"])))


def delete_order(refs: Sequence[ObjectRef]) -> list[ObjectRef]:
    """Reverse of the apply order (ties: last applied first), Namespaces last."""
    newest_first = list(reversed(refs))  # sorted() is stable: ties keep this order
    return sorted(newest_first, key=lambda r: (r.kind == "Namespace", -_rank(r.kind)))


def deployment_problem(obj: Mapping[str, Any]) -> str | None:
    """Why a Deployment is not Available yet (None when it is)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    want = int(spec.get("replicas", 1))
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return "its controller has not observed the latest spec"
    available = int(status.get("availableReplicas") or 0)
    cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Available"), None)
    if available >= want and (want == 0 or (cond and cond.get("status") == "True")):
        return None
    why = f"{available}/{want} available"
    return why + (f" ({cond.get('reason')}: {cond.get('message')})" if cond and cond.get("message") else "")


def default_container(pod: Mapping[str, Any]) -> str:
    """The container `exec` without a name runs in: kubectl's default-container annotation, else the first
    container that is not a mesh proxy (the API server refuses to choose when a pod has several)."""
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    annotated = ((pod.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if annotated in names:
        return str(annotated)
    apps = [n for n in names if n not in PROXY_CONTAINERS]
    return (apps or names or [""])[0]


def exit_code(status_text: str) -> tuple[int, str]:
    """Exit code and error text from the exec status channel's Status object."""
    try:
        status = json.loads(status_text)
    except ValueError:
        return 126, f"unreadable exec status: {status_text[:200]}"
    if status.get("status") == "Success":
        return 0, ""
    causes = (status.get("details") or {}).get("causes") or []
    if status.get("reason") == "NonZeroExitCode":
        for cause in causes:
            if cause.get("reason") == "ExitCode" and str(cause.get("message", "")).isdigit():
                return int(cause["message"]), ""
    return 126, str(status.get("message") or status_text[:200])
