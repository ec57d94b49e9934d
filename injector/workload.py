"""Offline injection of YAML documents (`meshlet inject`): pod templates of workloads, pods, Lists.

The same plan and patch as the webhook (`patch.py`), applied here to the pod
template of each workload: Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
ReplicationController, Job, CronJob, and the items of a List. Other documents
pass through unchanged. Manual semantics (like `linkerd inject --manual` and
`istioctl kube-inject`): the workload is injected unless it opts out
(`sidecar.istio.io/inject` / `meshlet.io/inject` "false" on the template).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshlet.injector.config import InjectorConfig
from meshlet.injector.decide import InjectionError, decide
from meshlet.injector.overrides import OverrideError
from meshlet.injector.patch import Op, PodError, json_patch

FORCED_NAMESPACE = {"meshlet.io/inject": "enabled"}
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


class WorkloadError(ValueError):
    """A document cannot be injected (the message names it)."""


@dataclass(frozen=True)
class Report:
    """What happened to one workload (for the CLI's summary on stderr)."""

    name: str
    """`Kind/name` (or `Kind/name` of a List item)."""
    result: str
    """injected | skipped"""
    reason: str


def unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def apply_ops(doc: Any, ops: list[Op]) -> Any:
    """Apply `add` operations (all `patch.py` emits) to a deep copy of `doc` (RFC 6902 semantics)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        if op.get("op") != "add":
            raise ValueError(f"only add operations are supported, got {op.get('op')!r}")
        tokens = [unescape(t) for t in str(op["path"]).split("/")[1:]]
        parent = doc
        for t in tokens[:-1]:
            parent = parent[int(t)] if isinstance(parent, list) else parent[t]
        last, value = tokens[-1], copy.deepcopy(op["value"])
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[last] = value
    return doc


def _name(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    return f"{doc.get('kind', '?')}/{(meta or {}).get('name') or (meta or {}).get('generateName') or '?'}"


def _inject_template(template: Mapping[str, Any], cfg: InjectorConfig, name: str) -> tuple[Any, Report]:
    meta = template.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise WorkloadError(f"{name}: pod template metadata must be an object")
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    try:
        decision = decide(FORCED_NAMESPACE, labels, annotations)
        if not decision.inject:
            return template, Report(name, "skipped", decision.reason)
        ops, reason = json_patch(template, cfg)
    except (InjectionError, OverrideError, PodError) as e:
        raise WorkloadError(f"{name}: {e}") from None
    if not ops:
        return template, Report(name, "skipped", reason)
    return apply_ops(template, ops), Report(name, "injected", decision.reason)


def inject_document(doc: Any, cfg: InjectorConfig, where: str = "") -> tuple[Any, list[Report]]:
    """The document with its pod templates injected, and one report per workload found."""
    if not isinstance(doc, Mapping):
        return doc, []
    kind = doc.get("kind")
    name = f"{where}{_name(doc)}"
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list)):
        out, reports = dict(doc), []
        items = []
        for i, item in enumerate(doc.get("items") or []):
            new, rs = inject_document(item, cfg, f"{name} item {i}: ")
            items.append(new)
            reports += rs
        out["items"] = items
        return out, reports
    if kind == "Pod":
        new, report = _inject_template(doc, cfg, name)
        return new, [report]
    path = TEMPLATE_PATHS.get(str(kind))
    if path is None:
        return doc, []
    parent: Any = doc
    for key in path[:-1]:
        parent = parent.get(key) if isinstance(parent, Mapping) else None
    template = parent.get(path[-1]) if isinstance(parent, Mapping) else None
    if not isinstance(template, Mapping):
        raise WorkloadError(f"{name}: no pod template at {'.'.join(path)}")
    new_template, report = _inject_template(template, cfg, name)
    out = copy.deepcopy(dict(doc))
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new_template
    return out, [report]
