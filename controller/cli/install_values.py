"""The values of the control-plane install: one documented table, the source of `values.yaml`.

`VALUES` lists every value (dotted path, default, one-line doc). `meshlet
install` starts from `default_values()`, applies `--values FILE` and `--set
k=v`, and `validate()` rejects unknown keys and wrong types by name, so a typo
never renders a silently different manifest. `values_yaml()` writes the chart's
commented `values.yaml` from the same table (see `install_chart`).
"""
from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml


class InstallError(Exception):
    """Bad install input (values, certificate files); the message names what is wrong."""


@dataclass(frozen=True)
class Value:
    path: str
    default: Any
    doc: str


_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}

VALUES: tuple[Value, ...] = (
    Value("image.name", "meshlet/meshlet", "Image repository used by every control-plane component and by injected proxies."),
    Value("image.tag", "", "Image tag; empty means the chart's appVersion (the meshlet version)."),
    Value("image.pullPolicy", "IfNotPresent", "Image pull policy of the control-plane containers."),
    Value("trustDomain", "cluster.local", "Trust domain of the SPIFFE identities (spiffe://<trustDomain>/ns/<ns>/sa/<sa>)."),
    Value("logLevel", "info", "Log level of the control-plane processes (debug, info, warning, error)."),
    Value("identity.trustAnchorsPEM", "",
          "Required. PEM bundle of trust anchors proxies verify peers against (ECDSA P-256 or RSA 2048/4096). "
          "`meshlet install` generates one; helm's genCA cannot (it makes RSA keys and no CA-capable issuer)."),
    Value("identity.issuer.tls.crtPEM", "", "Required. Issuer certificate (ECDSA P-256 CA, signed by a trust anchor), PEM."),
    Value("identity.issuer.tls.keyPEM", "", "Required. Issuer private key (EC P-256), PEM."),
    Value("identity.tokenAudience", "identity.meshlet.io", "Audience of the projected service-account tokens identity accepts (TokenReview)."),
    Value("identity.replicas", 1, "Replicas of meshlet-identity."),
    Value("identity.resources", _RESOURCES, "Container resources of meshlet-identity."),
    Value("destination.replicas", 1, "Replicas of meshlet-destination."),
    Value("destination.resources", _RESOURCES, "Container resources of meshlet-destination."),
    Value("injector.replicas", 1, "Replicas of meshlet-injector."),
    Value("injector.resources", _RESOURCES, "Container resources of meshlet-injector."),
    Value("injector.failurePolicy", "Ignore",
          "Webhook failure policy: Ignore (pods are created uninjected while the injector is down) or Fail (pod creation fails)."),
    Value("injector.nativeSidecar", "auto",
          "Inject the proxy as a native sidecar (init container with restartPolicy Always): auto (when the API server supports it), on, off."),
    Value("injector.timeoutSeconds", 10, "Seconds the API server waits for the injector before applying the failure policy."),
    Value("injector.tls.caPEM", "", "Required. CA (PEM) that signed the webhook serving certificate; becomes the webhook's caBundle."),
    Value("injector.tls.crtPEM", "", "Required. Webhook serving certificate (PEM) for meshlet-injector.<namespace>.svc."),
    Value("injector.tls.keyPEM", "", "Required. Webhook serving key (PEM)."),
)

REQUIRED = ("identity.trustAnchorsPEM", "identity.issuer.tls.crtPEM", "identity.issuer.tls.keyPEM",
            "injector.tls.caPEM", "injector.tls.crtPEM", "injector.tls.keyPEM")
"""Paths the chart marks `required`; `meshlet install` fills them unless given."""

FAILURE_POLICIES = ("Ignore", "Fail")


def default_values() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in VALUES:
        set_path(out, v.path, copy.deepcopy(v.default))
    return out


def get_path(values: Mapping[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise InstallError(f"value {path!r} is not set")
        node = node[part]
    return node


def set_path(values: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = values
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InstallError(f"cannot set {path!r}: {part!r} is not a map")
        node = child
    node[parts[-1]] = value


def merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `overlay` merged in (maps merge, everything else replaces), like helm."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and not _is_leaf_map(key, out):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _is_leaf_map(key: str, node: Mapping[str, Any]) -> bool:
    return key == "resources"


def parse_set(assignment: str) -> tuple[str, Any]:
    """`a.b=c` → ("a.b", c) typed as `helm --set` types it: true/false are bools, digits an int, else a string."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path.strip():
        raise InstallError(f"--set {assignment!r}: expected key=value")
    value: Any = raw
    if raw in ("true", "false"):
        value = raw == "true"
    elif re.fullmatch(r"-?(0|[1-9][0-9]*)", raw):
        value = int(raw)
    return path.strip(), value


def apply_sets(values: dict[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    out = copy.deepcopy(values)
    for a in assignments:
        path, value = parse_set(a)
        set_path(out, path, value)
    return out


def validate(values: Mapping[str, Any]) -> None:
    """Raise InstallError naming the first unknown key or wrongly typed value."""
    known = {v.path: v for v in VALUES}
    for path, value in _leaves(values):
        spec = known.get(path)
        if spec is None:
            prefix = next((p for p in known if path.startswith(p + ".")), None)
            if prefix is not None and isinstance(known[prefix].default, dict):
                continue  # inside a free-form map such as resources
            raise InstallError(f"unknown value {path!r} (known: {', '.join(sorted(known))})")
        want = type(spec.default)
        if want is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise InstallError(f"value {path!r} must be an integer, got {value!r}")
        if want is str and not isinstance(value, str):
            raise InstallError(f"value {path!r} must be a string, got {value!r}")
        if want is dict and not isinstance(value, Mapping):
            raise InstallError(f"value {path!r} must be a map, got {value!r}")
    native = get_path(values, "injector.nativeSidecar")
    if native not in ("auto", "on", "off"):
        raise InstallError(f"value 'injector.nativeSidecar' must be auto, on or off, got {native!r}")
    policy = get_path(values, "injector.failurePolicy")
    if policy not in FAILURE_POLICIES:
        raise InstallError(f"value 'injector.failurePolicy' must be one of {', '.join(FAILURE_POLICIES)}, got {policy!r}")


def _leaves(values: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and path not in {v.path for v in VALUES}:
            yield from _leaves(value, path + ".")
        else:
            yield path, value


def values_yaml() -> str:
    """The chart's values.yaml: every value with its doc as a comment above it."""
    lines = ["# Values of the meshlet control-plane chart (generated from",
             "# meshlet.controller.cli.install_values.VALUES by `make chart`; edit there).", ""]
    emitted: set[str] = set()
    for v in VALUES:
        parts = v.path.split(".")
        for depth in range(len(parts) - 1):
            parent = ".".join(parts[: depth + 1])
            if parent not in emitted:
                emitted.add(parent)
                lines.append(f"{'  ' * depth}{parts[depth]}:")
        indent = "  " * (len(parts) - 1)
        lines.append(f"{indent}# {v.doc}")
        dumped = yaml.safe_dump({parts[-1]: v.default}, default_flow_style=False, sort_keys=False).rstrip("\n")
        lines.extend(indent + line for line in dumped.splitlines())
    return "\n".join(lines) + "\n"
