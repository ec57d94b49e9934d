"""Which proxy settings a workload gets: Istio's ProxyConfig precedence, pure.

For each field (only `concurrency` is used so far) the first level that sets it wins:

1. a ProxyConfig in the workload's namespace whose `selector.matchLabels` match its labels,
2. a ProxyConfig in the workload's namespace without selector,
3. a ProxyConfig in the root namespace (MeshConfig `rootNamespace`, `istio-system`) without selector,
4. the pod template's `proxy.istio.io/config` annotation (YAML of ProxyConfig fields),
5. MeshConfig `defaultConfig`.

Several ProxyConfigs on one level: the oldest (creation time, then name) wins,
as for Istio's conflicting resources. Nothing set: the proxy's default (one
process). The runtime passes the result as MESHLET_PROXY_CONCURRENCY; a change
replaces the workload's pods like a rollout (a proxy reads its settings once).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

ANNOTATION = "proxy.istio.io/config"
ROOT_NAMESPACE = "istio-system"


class ProxyConfigError(ValueError):
    """The `proxy.istio.io/config` annotation is not usable (the message says why)."""


@dataclass(frozen=True)
class ProxySettings:
    concurrency: int | None = None
    """Worker processes; None: the proxy's default (1); 0: one per core."""
    source: str = field(default="", compare=False)
    """Where `concurrency` came from (`ProxyConfig ns/name`, the annotation, MeshConfig); not
    compared: the same value from elsewhere does not roll the pods."""

    def env(self) -> dict[str, str]:
        return {} if self.concurrency is None else {"MESHLET_PROXY_CONCURRENCY": str(self.concurrency)}


DEFAULT_SETTINGS = ProxySettings()


@dataclass(frozen=True)
class ProxyConfigRule:
    """What the runtime reads of a ProxyConfig resource."""

    namespace: str
    name: str
    match_labels: tuple[tuple[str, str], ...] | None
    """None (or empty): the whole namespace."""
    concurrency: int | None
    created: str = ""

    @classmethod
    def from_resource(cls, res: Any) -> ProxyConfigRule:
        spec = res.spec
        labels = spec.selector.match_labels if spec.selector is not None else None
        return cls(namespace=res.metadata.namespace or "", name=res.metadata.name,
                   match_labels=tuple(sorted(labels.items())) if labels else None,
                   concurrency=spec.concurrency, created=res.metadata.creation_timestamp or "")

    @property
    def label(self) -> str:
        return f"ProxyConfig {self.namespace}/{self.name}"


def parse_annotation(value: str) -> int | None:
    """`concurrency` of a `proxy.istio.io/config` annotation (None when it does not set it)."""
    try:
        doc = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ProxyConfigError(f"{ANNOTATION}: not YAML: {str(e).splitlines()[0]}") from None
    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        raise ProxyConfigError(f"{ANNOTATION}: must be a mapping of ProxyConfig fields, got {json.dumps(doc)}")
    c = doc.get("concurrency")
    if c is None:
        return None
    if isinstance(c, bool) or not isinstance(c, int) or c < 0:
        raise ProxyConfigError(f"{ANNOTATION}: concurrency must be a whole number >= 0, got {c!r}")
    return c


def _oldest(rules: Iterable[ProxyConfigRule]) -> ProxyConfigRule | None:
    setting = [r for r in rules if r.concurrency is not None]
    return min(setting, key=lambda r: (r.created, r.name), default=None)


def effective(namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str],
              rules: Iterable[ProxyConfigRule], *, root_namespace: str = ROOT_NAMESPACE,
              mesh_default: int | None = None) -> tuple[ProxySettings, str]:
    """The settings of a workload, and a problem to report ("" when none)."""
    rules = list(rules)
    in_ns = [r for r in rules if r.namespace == namespace]
    levels = (
        [r for r in in_ns if r.match_labels and all(labels.get(k) == v for k, v in r.match_labels)],
        [r for r in in_ns if not r.match_labels],
        [r for r in rules if r.namespace == root_namespace and not r.match_labels],
    )
    for level in levels:
        won = _oldest(level)
        if won is not None:
            return ProxySettings(won.concurrency, won.label), ""
    problem = ""
    if ANNOTATION in annotations:
        try:
            c = parse_annotation(annotations[ANNOTATION])
        except ProxyConfigError as e:
            c, problem = None, str(e)
        if c is not None:
            return ProxySettings(c, f"annotation {ANNOTATION}"), ""
    if mesh_default is not None:
        return ProxySettings(mesh_default, "MeshConfig defaultConfig"), problem
    return ProxySettings(), problem


def pod_labels_env(labels: Mapping[str, str]) -> dict[str, str]:
    """MESHLET_PROXY_POD_LABELS (the proxy's format: a JSON object of strings)."""
    return {"MESHLET_PROXY_POD_LABELS": json.dumps(dict(sorted(labels.items())), separators=(",", ":"))}
