"""CustomResourceDefinitions (apiextensions.k8s.io/v1) for the kinds meshlet reads from a cluster.

Kubernetes serves none of these kinds itself: Istio's networking/security/telemetry kinds,
the Gateway API HTTPRoute and meshlet's own MeshConfig. Each CRD's structural OpenAPI v3
schema is derived from the kind's frozen dataclasses, through the converter's own view of
them (`convert._fields`: YAML names, types, required fields, accepted seed spellings), so
the API server accepts exactly the documents `from_obj` reads, minus what only `validate()`
hooks check (durations, regexes, weights summing to 100, ...: meshlet checks those itself).

Type mapping: str/int/float/bool -> string/integer/number/boolean; `Literal[...]` and Enum
-> `enum`; `int | str` -> `x-kubernetes-int-or-string`; `tuple[X, ...]`/`list[X]` -> array;
`dict[K, X]` -> object with `additionalProperties` (integer keys are strings in JSON);
dataclasses -> object with `properties` and `required`; `Any` (data the model passes through
untyped: `status`, `tunnel`, ...) -> object with `x-kubernetes-preserve-unknown-fields`.
A seed spelling (`yfield(warn_aliases=...)`) is a property too, with the target's schema, or
free-form when an adapter reshapes its value (RequestAuthentication `headers: [Authorization]`).

Public: `render_crds() -> list[dict]`, `crd_yaml() -> str` (one multi-document YAML stream),
`crd_for(info) -> dict`, `schema_for(tp) -> dict`, `CRD_GROUPS`. `python -m
meshlet.controller.model.crd [--check] [DIR]` writes (or checks) the Helm chart
`helm/meshlet-crds` (`make crds`).
"""
from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from meshlet.controller.model.convert import _fields, _is_union  # the converter's own view of a dataclass
from meshlet.controller.model.kinds import DEFAULT_REGISTRY
from meshlet.controller.model.registry import KindInfo, Registry

CRD_GROUPS = ("networking.istio.io", "security.istio.io", "telemetry.istio.io",
              "gateway.networking.k8s.io", "meshlet.io")
"""API groups whose kinds get a CRD (Kubernetes serves none of them)."""

_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_INT_OR_STRING = "x-kubernetes-int-or-string"
_AGE_DOC = "When the object was created (metadata.creationTimestamp)."


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    description: str
    type: str = "string"

    def to_obj(self) -> dict[str, Any]:
        return {"name": self.name, "jsonPath": self.json_path, "description": self.description, "type": self.type}


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", _AGE_DOC, "date")

# kubectl get columns, as Istio's and the Gateway API's CRDs define them.
PRINTER_COLUMNS: dict[str, tuple[PrinterColumn, ...]] = {
    "VirtualService": (
        PrinterColumn("Gateways", ".spec.gateways", "The gateways and sidecars these routes apply to."),
        PrinterColumn("Hosts", ".spec.hosts", "The destination hosts these routes apply to."),
        AGE),
    "DestinationRule": (PrinterColumn("Host", ".spec.host", "The service these policies apply to."), AGE),
    "ServiceEntry": (
        PrinterColumn("Hosts", ".spec.hosts", "The hosts of the entry."),
        PrinterColumn("Location", ".spec.location", "Whether the service is inside or outside the mesh."),
        PrinterColumn("Resolution", ".spec.resolution", "How the proxy finds the service's addresses."),
        AGE),
    "WorkloadEntry": (AGE, PrinterColumn("Address", ".spec.address", "The workload's address.")),
    "PeerAuthentication": (PrinterColumn("Mode", ".spec.mtls.mode", "The mTLS mode of the workloads."), AGE),
    "AuthorizationPolicy": (PrinterColumn("Action", ".spec.action", "ALLOW, DENY, AUDIT or CUSTOM."), AGE),
    "HTTPRoute": (PrinterColumn("Hostnames", ".spec.hostnames", "The hostnames the route matches."), AGE),
}

# Annotations a CRD needs beyond ours: groups under k8s.io must carry the API approval.
_GROUP_ANNOTATIONS = {
    "gateway.networking.k8s.io": {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/2466"},
}
_GROUP_CATEGORIES = {"gateway.networking.k8s.io": ("gateway-api",), "meshlet.io": ("meshlet-io",)}


def categories(group: str) -> list[str]:
    """Istio's categories (`istio-io`, `networking-istio-io`, ...): `kubectl get istio-io` lists them all."""
    if group in _GROUP_CATEGORIES:
        return list(_GROUP_CATEGORIES[group])
    return ["istio-io", group.replace(".", "-")]


# === schemas ===

def _scalar_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise TypeError(f"no OpenAPI type for enum value {value!r}")


_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def schema_for(tp: Any, _seen: tuple[type, ...] = ()) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model type (see the module doc for the mapping)."""
    if tp is Any:
        return {"type": "object", _PRESERVE: True}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return schema_for(args[0], _seen)
        if set(args) == {int, str}:
            return {_INT_OR_STRING: True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
        if set(args) == {int, float}:
            return {"type": "number"}
        raise TypeError(f"no structural schema for the union {tp!r}")
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        values = list(typing.get_args(tp))
        types = {_scalar_type(v) for v in values}
        if len(types) != 1:
            raise TypeError(f"Literal with mixed types {tp!r}")
        return {"type": types.pop(), "enum": values}
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is not Ellipsis or origin is tuple and len(args) > 2:
            raise TypeError(f"fixed-length tuple {tp!r} has no schema; use tuple[X, ...]")
        return {"type": "array", "items": schema_for(args[0] if args else Any, _seen)}
    if origin is dict:
        args = typing.get_args(tp)
        out = {"type": "object", "additionalProperties": schema_for(args[1] if args else Any, _seen)}
        if args and args[0] is int:  # JSON keys are strings: say they must be digits (PeerAuthentication ports)
            out["x-kubernetes-validations"] = [{"rule": "self.all(key, key.matches('^[0-9]+$'))",
                                                "message": "keys must be integers"}]
        return out
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = [m.value for m in tp]
        return {"type": _scalar_type(values[0]), "enum": values}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _object_schema(tp, _seen)
    raise TypeError(f"no structural schema for type {tp!r}")


def _object_schema(cls: type, seen: tuple[type, ...]) -> dict[str, Any]:
    if cls in seen:
        raise TypeError(f"recursive type {cls.__name__} has no structural schema")
    seen = (*seen, cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for fi in _fields(cls):
        props[fi.yaml] = schema_for(fi.tp, seen)
        if fi.required:
            required.append(fi.yaml)
        for alias, adapter in fi.aliases.items():
            props[alias] = _alias_schema(fi.yaml, fi.tp, adapter is not None, seen)
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def _alias_schema(canonical: str, tp: Any, reshaped: bool, seen: tuple[type, ...]) -> dict[str, Any]:
    note = f"Seed spelling of `{canonical}`: meshlet accepts it with a warning; write `{canonical}`."
    if not reshaped:
        out = dict(schema_for(tp, seen))
    elif typing.get_origin(_optional_inner(tp)) in (tuple, list):
        # an adapter rewrites each item (e.g. a header name into {name, prefix}): items are free-form
        out = {"type": "array", "items": {_PRESERVE: True}}
    else:
        out = {_PRESERVE: True}
    out["description"] = note
    return out


def _optional_inner(tp: Any) -> Any:
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


# === CRDs ===

def crd_kinds(registry: Registry = DEFAULT_REGISTRY) -> list[KindInfo]:
    """The registry's kinds that need a CRD: user-facing kinds of `CRD_GROUPS`."""
    return [info for info in registry if info.group in CRD_GROUPS and not info.internal]


def _resource_schema(info: KindInfo) -> dict[str, Any]:
    props: dict[str, Any] = {
        "apiVersion": {"type": "string", "description": "The versioned schema of this representation of an object."},
        "kind": {"type": "string", "description": "The REST resource this object represents."},
        "metadata": {"type": "object"},
    }
    required = []
    for fi in _fields(info.cls):
        if fi.yaml == "metadata":
            continue
        props[fi.yaml] = schema_for(fi.tp)
        if fi.required:
            required.append(fi.yaml)
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def crd_for(info: KindInfo) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind: every apiVersion it accepts is served, the
    class's own apiVersion is the storage version."""
    group = info.group
    schema = _resource_schema(info)
    columns = [c.to_obj() for c in PRINTER_COLUMNS.get(info.kind, (AGE,))]
    versions = []
    for api_version in info.api_versions:
        name = api_version.rpartition("/")[2]
        versions.append({
            "name": name,
            "served": True,
            "storage": api_version == info.api_version,
            "schema": {"openAPIV3Schema": schema},
            "subresources": {"status": {}},
            "additionalPrinterColumns": columns,
        })
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.kind.lower(),
        "categories": categories(group),
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    annotations = {"helm.sh/resource-policy": "keep", **_GROUP_ANNOTATIONS.get(group, {})}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{group}",
            "labels": {"app.kubernetes.io/part-of": "meshlet", "app.kubernetes.io/component": "crds"},
            "annotations": annotations,
        },
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "versions": versions,
        },
    }


def render_crds(registry: Registry = DEFAULT_REGISTRY) -> list[dict[str, Any]]:
    """Every CRD meshlet needs, as plain objects (for `meshlet install --crds` and the chart)."""
    return [crd_for(info) for info in crd_kinds(registry)]


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Plain YAML: no anchors (every version repeats its schema), block style; the C emitter is much faster."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=120)


def crd_yaml(registry: Registry = DEFAULT_REGISTRY) -> str:
    """All CRDs as one multi-document YAML stream."""
    return "".join(f"---\n{to_yaml(crd)}" for crd in render_crds(registry))


def walk(schema: dict[str, Any], path: str = "") -> Iterable[tuple[str, dict[str, Any]]]:
    """(path, node) for every schema node below and including `schema` (for checks and docs)."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


# === the Helm chart (helm/meshlet-crds) ===

CHART_DESCRIPTION = ("CustomResourceDefinitions meshlet reads: Istio's networking, security and telemetry kinds, "
                     "the Gateway API HTTPRoute and meshlet's MeshConfig")
GENERATED_NOTE = "# Generated by `make crds` from meshlet.controller.model (controller/model/crd.py); do not edit.\n"


def meshlet_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("meshlet")
    except PackageNotFoundError:
        return "0.0.0"


def chart_files(version: str | None = None, registry: Registry = DEFAULT_REGISTRY) -> dict[str, str]:
    """Generated files of the chart, relative path -> text (values.yaml is hand-written)."""
    version = version or meshlet_version()
    chart = {"apiVersion": "v2", "name": "meshlet-crds", "description": CHART_DESCRIPTION, "type": "application",
             "version": version, "appVersion": version, "keywords": ["meshlet", "istio", "crds"]}
    files = {"Chart.yaml": GENERATED_NOTE + to_yaml(chart)}
    for crd in render_crds(registry):
        files[f"templates/{crd['metadata']['name']}.yaml"] = GENERATED_NOTE + to_yaml(crd)
    return files


def stale_files(chart_dir: Any, version: str | None = None) -> list[str]:
    """Generated files missing, different, or left over in `chart_dir` (empty: up to date)."""
    from pathlib import Path

    from meshlet.controller import chartfiles
    return chartfiles.stale(Path(chart_dir), chart_files(version))


def write_chart(chart_dir: Any, version: str | None = None) -> list[str]:
    """Write the generated files (removing stale generated templates); returns what changed."""
    from pathlib import Path

    from meshlet.controller import chartfiles
    return chartfiles.write(Path(chart_dir), chart_files(version))


def main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m meshlet.controller.model.crd",
                                     description="Write (or --check) the meshlet-crds Helm chart.")
    parser.add_argument("chart_dir", nargs="?", default=str(Path(__file__).resolve().parents[2] / "helm" / "meshlet-crds"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files are stale")
    parser.add_argument("--stdout", action="store_true", help="print all CRDs as one YAML stream instead")
    args = parser.parse_args(argv)
    if args.stdout:
        print(crd_yaml(), end="")
        return 0
    from meshlet.controller import chartfiles
    return chartfiles.check_or_write(Path(args.chart_dir), chart_files(), check=args.check, make_target="crds")

if __name__ == "__main__":
    raise SystemExit(main())
