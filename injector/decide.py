"""Whether a pod gets a sidecar: a pure function, the same for local mode and the webhook.

Precedence (Istio's, highest first):
1. the pod's `sidecar.istio.io/inject` / `meshlet.io/inject` **label**
   ("true"/"false"), then the same key as an **annotation** (deprecated in
   Istio, still honoured);
2. otherwise the namespace: label `istio-injection=enabled` or
   `meshlet.io/inject=enabled` → inject; `istio-injection=disabled` → not;
3. otherwise no injection.

Istio additionally lets a pod opt *out* inside an enabled namespace and opt
*in* only where the namespace does not say `disabled`; this is kept: a
namespace labelled `istio-injection=disabled` wins over a pod's "true".
Unknown values are errors (named), not silently ignored.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

POD_KEYS = ("sidecar.istio.io/inject", "meshlet.io/inject")
NAMESPACE_KEYS = ("istio-injection", "meshlet.io/inject")


class InjectionError(ValueError):
    """A label or annotation has a value we do not understand."""


@dataclass(frozen=True)
class Decision:
    inject: bool
    reason: str


def _pod_value(labels: Mapping[str, str], annotations: Mapping[str, str]) -> tuple[bool, str] | None:
    for source, values in (("label", labels), ("annotation", annotations)):
        for key in POD_KEYS:
            if key in values:
                v = str(values[key]).strip().lower()
                if v not in ("true", "false"):
                    raise InjectionError(f'pod {source} {key}={values[key]!r}: must be "true" or "false"')
                return v == "true", f"pod {source} {key}={v}"
    return None


def _namespace_value(labels: Mapping[str, str]) -> tuple[bool, str] | None:
    for key in NAMESPACE_KEYS:
        if key in labels:
            v = str(labels[key]).strip().lower()
            if v not in ("enabled", "disabled"):
                raise InjectionError(f'namespace label {key}={labels[key]!r}: must be "enabled" or "disabled"')
            return v == "enabled", f"namespace label {key}={v}"
    return None


def decide(namespace_labels: Mapping[str, str], pod_labels: Mapping[str, str],
           pod_annotations: Mapping[str, str]) -> Decision:
    ns = _namespace_value(namespace_labels)
    pod = _pod_value(pod_labels, pod_annotations)
    if ns is not None and not ns[0]:
        return Decision(False, ns[1])
    if pod is not None:
        return Decision(pod[0], pod[1])
    if ns is not None:
        return Decision(ns[0], ns[1])
    return Decision(False, "no injection label on the namespace or the pod")
