"""CRDs generated from the model: structural schemas, Istio's names/versions/columns, the seed
examples fit them (checked here with a small local validator; tests/kube/test_crds_*.py checks
the same against a real API server), and the committed Helm chart is fresh."""
from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from meshlet.controller.model import DEFAULT_REGISTRY, from_obj, to_obj
from meshlet.controller.model.crd import (
    CRD_GROUPS,
    crd_kinds,
    crd_yaml,
    main,
    render_crds,
    schema_for,
    stale_files,
    walk,
)
from meshlet.e2e.seeds import SEED_EXAMPLES

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "meshlet-crds"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"
CRDS = {c["spec"]["names"]["kind"]: c for c in render_crds()}


# === a small structural-schema validator (what the API server does with fieldValidation=Strict) ===

def check(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Problems of `value` against a structural schema, each naming its path."""
    if path == ".metadata":
        return []  # ObjectMeta is validated by the API server itself, not by the CRD schema
    if schema.get(INT_OR_STRING):
        ok = isinstance(value, (int, str)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: must be an integer or a string"]
    if "type" not in schema:
        return [] if schema.get(PRESERVE) else [f"{path}: schema node without type"]
    t = schema["type"]
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}
    if not isinstance(value, kinds[t]) or (t in ("integer", "number") and isinstance(value, bool)):
        return [f"{path}: must be of type {t}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: unsupported value {value!r}"]
    out: list[str] = []
    if t == "array":
        for i, item in enumerate(value):
            out += check(schema["items"], item, f"{path}[{i}]")
    if t == "object":
        if schema.get("x-kubernetes-validations") and not all(k.isdigit() for k in value):
            out.append(f"{path}: keys must be integers")
        props = schema.get("properties", {})
        for key, item in value.items():
            if item is None:  # the API server prunes nulls of non-nullable fields
                continue
            sub = props.get(key, schema.get("additionalProperties"))
            if sub is None:
                if not schema.get(PRESERVE):
                    out.append(f"{path}.{key}: unknown field")
                continue
            out += check(sub, item, f"{path}.{key}")
        for key in schema.get("required", []):
            if value.get(key) is None:
                out.append(f"{path}.{key}: Required value")
    return out


def schema_of(kind: str) -> dict[str, Any]:
    return CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def seed_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(SEED_EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in CRDS:
                docs.append((path.name, json.loads(json.dumps(doc))))  # as JSON: integer keys become strings
    return docs


SEED_DOCS = seed_documents()


# === structure ===

FORBIDDEN = {"$ref", "definitions", "dependencies", "patternProperties", "additionalItems", "uniqueItems", "id",
             "readOnly", "writeOnly", "xml", "discriminator", "deprecated", "externalDocs", "$schema", "default"}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_schema_is_structural(kind: str) -> None:
    for version in CRDS[kind]["spec"]["versions"]:
        root = version["schema"]["openAPIV3Schema"]
        assert root["type"] == "object" and root["properties"]["metadata"] == {"type": "object"}
        for path, node in walk(root):
            assert not FORBIDDEN & set(node), f"{kind} {path}: forbidden keyword {FORBIDDEN & set(node)}"
            if node.get(INT_OR_STRING):
                assert "type" not in node and node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            else:
                assert node.get("type") in TYPES or (node.get(PRESERVE) and "type" not in node), \
                    f"{kind} {path}: no type"
                assert "anyOf" not in node and "oneOf" not in node and "allOf" not in node, path
            assert not ("properties" in node and "additionalProperties" in node), path
            if node.get("type") == "array":
                assert isinstance(node["items"], dict), path
            for req in node.get("required", []):
                assert req in node["properties"], f"{kind} {path}: required {req} is not a property"


def test_the_kinds_kubernetes_does_not_serve_get_a_crd() -> None:
    assert sorted(CRDS) == sorted([
        "VirtualService", "DestinationRule", "ServiceEntry", "Gateway", "Sidecar", "WorkloadEntry", "ProxyConfig",
        "PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication", "Telemetry", "HTTPRoute", "MeshConfig"])
    assert all(info.group in CRD_GROUPS for info in crd_kinds())
    assert "WorkloadToken" not in CRDS  # meshlet-internal


def versions(kind: str) -> dict[str, bool]:
    return {v["name"]: v["storage"] for v in CRDS[kind]["spec"]["versions"]}


def test_served_versions_and_storage() -> None:
    for kind in ("VirtualService", "DestinationRule", "ServiceEntry", "Gateway", "Sidecar", "WorkloadEntry"):
        assert versions(kind) == {"v1": True, "v1beta1": False, "v1alpha3": False}
    for kind in ("PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication"):
        assert versions(kind) == {"v1": True, "v1beta1": False}
    assert versions("Telemetry") == {"v1": True, "v1alpha1": False}
    assert versions("HTTPRoute") == {"v1": True, "v1beta1": False}
    assert versions("ProxyConfig") == {"v1beta1": True, "v1alpha3": False}  # v1alpha3: the seed's
    assert versions("MeshConfig") == {"v1alpha1": True}
    for crd in CRDS.values():
        for v in crd["spec"]["versions"]:
            assert v["served"] and v["subresources"] == {"status": {}}
            assert v["schema"] == crd["spec"]["versions"][0]["schema"]  # Istio: one schema for every version


def test_names_categories_and_scope() -> None:
    vs = CRDS["VirtualService"]
    assert vs["metadata"]["name"] == "virtualservices.networking.istio.io"
    assert vs["spec"]["names"] == {"kind": "VirtualService", "listKind": "VirtualServiceList",
                                   "plural": "virtualservices", "singular": "virtualservice", "shortNames": ["vs"],
                                   "categories": ["istio-io", "networking-istio-io"]}
    assert CRDS["PeerAuthentication"]["spec"]["names"]["categories"] == ["istio-io", "security-istio-io"]
    assert CRDS["Telemetry"]["spec"]["names"]["categories"] == ["istio-io", "telemetry-istio-io"]
    assert CRDS["HTTPRoute"]["spec"]["names"]["categories"] == ["gateway-api"]
    assert CRDS["MeshConfig"]["spec"]["scope"] == "Cluster"
    assert CRDS["Gateway"]["spec"]["scope"] == "Namespaced"
    # groups under k8s.io are protected: the API server requires the approval annotation
    assert "api-approved.kubernetes.io" in CRDS["HTTPRoute"]["metadata"]["annotations"]


def columns(kind: str) -> list[tuple[str, str]]:
    return [(c["name"], c["jsonPath"]) for c in CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]]


def test_printer_columns_like_istio() -> None:
    assert columns("VirtualService") == [("Gateways", ".spec.gateways"), ("Hosts", ".spec.hosts"),
                                         ("Age", ".metadata.creationTimestamp")]
    assert columns("DestinationRule") == [("Host", ".spec.host"), ("Age", ".metadata.creationTimestamp")]
    assert columns("Sidecar") == [("Age", ".metadata.creationTimestamp")]


# === the mapping from model types ===

def test_schema_mapping() -> None:
    spec = schema_of("VirtualService")["properties"]["spec"]
    http = spec["properties"]["http"]["items"]["properties"]
    assert spec["properties"]["hosts"] == {"type": "array", "items": {"type": "string"}}
    assert http["match"]["items"]["properties"]["headers"]["additionalProperties"]["properties"]["regex"] == \
        {"type": "string"}
    abort = http["fault"]["properties"]["abort"]["properties"]
    assert abort["grpcStatus"][INT_OR_STRING] is True  # str | int in the model
    assert http["redirect"]["properties"]["derivePort"] == {
        "type": "string", "enum": ["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"]}
    assert http["mirrorPercentage"]["properties"]["value"] == {"type": "number"}
    assert schema_of("VirtualService")["required"] == ["spec"]
    dr = schema_of("DestinationRule")["properties"]["spec"]
    assert dr["required"] == ["host"]
    pa = schema_of("PeerAuthentication")["properties"]["spec"]["properties"]
    assert pa["portLevelMtls"]["additionalProperties"]["properties"]["mode"]["enum"] == [
        "UNSET", "DISABLE", "PERMISSIVE", "STRICT"]
    assert pa["mTLS"]["properties"] == pa["mtls"]["properties"]  # the seed's spelling, same shape
    assert schema_of("Sidecar")["properties"]["status"] == {"type": "object", PRESERVE: True}


def test_schema_for_rejects_what_has_no_structural_form() -> None:
    with pytest.raises(TypeError, match="union"):
        schema_for(typing.Union[str, bool])
    with pytest.raises(TypeError, match="mixed"):
        schema_for(Literal[1, "a"])
    assert schema_for(Literal[301, 302]) == {"type": "integer", "enum": [301, 302]}


# === documents ===

def test_there_are_seed_documents_of_every_api_version_used() -> None:
    used = {(d["apiVersion"], d["kind"]) for _, d in SEED_DOCS}
    assert ("networking.istio.io/v1alpha3", "ProxyConfig") in used
    assert ("security.istio.io/v1beta1", "PeerAuthentication") in used
    assert ("telemetry.istio.io/v1alpha1", "Telemetry") in used
    for api_version, kind in used:
        assert api_version.rpartition("/")[2] in versions(kind)


@pytest.mark.parametrize(("name", "doc"), SEED_DOCS, ids=[f"{n}:{d['kind']}" for n, d in SEED_DOCS])
def test_seed_examples_fit_the_schema(name: str, doc: dict[str, Any]) -> None:
    if name.startswith("16-"):  # the fragment: no metadata.name (the API server's own check) and no hosts
        assert "name" not in doc["metadata"] if "metadata" in doc else True
        return
    assert check(schema_of(doc["kind"]), doc) == []
    info = DEFAULT_REGISTRY.for_kind(doc["kind"])
    warnings: list[str] = []
    resource = from_obj(info.cls, doc, warnings=warnings)
    assert check(schema_of(doc["kind"]), json.loads(json.dumps(to_obj(resource)))) == []  # canonical form too


BAD = [
    ("VirtualService", {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}, "weight": "ten"}]}]},
     ".spec.http[0].route[0].weight: must be of type integer"),
    ("VirtualService", {"hosts": ["r"], "http": [{"rout": []}]}, ".spec.http[0].rout: unknown field"),
    ("DestinationRule", {"subsets": [{"name": "v1"}]}, ".spec.host: Required value"),
    ("DestinationRule", {"host": "r", "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"}}},
     ".spec.trafficPolicy.loadBalancer.simple: unsupported value 'FASTEST'"),
    ("PeerAuthentication", {"mtls": {"mode": "STRICT"}, "mTLs": {}}, ".spec.mTLs: unknown field"),
    ("PeerAuthentication", {"portLevelMtls": {"http": {"mode": "STRICT"}}}, ".spec.portLevelMtls: keys must be integers"),
]


@pytest.mark.parametrize(("kind", "spec", "problem"), BAD)
def test_invalid_documents_name_the_field(kind: str, spec: dict[str, Any], problem: str) -> None:
    doc = {"apiVersion": DEFAULT_REGISTRY.for_kind(kind).api_version, "kind": kind,
           "metadata": {"name": "x"}, "spec": spec}
    assert check(schema_of(kind), doc) == [problem]


# === outputs ===

def test_crd_yaml_is_the_rendered_crds() -> None:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    assert list(yaml.load_all(crd_yaml(), Loader=loader)) == render_crds()
    assert "&id" not in crd_yaml() and "*id" not in crd_yaml()  # no YAML anchors


def test_committed_chart_is_fresh() -> None:
    assert stale_files(CHART) == [], "helm/meshlet-crds is stale: run `make crds`"
    assert main(["--check", str(CHART)]) == 0


def test_check_reports_stale_and_leftover_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 0
    assert stale_files(tmp_path) == []
    (tmp_path / "templates" / "old.example.io.yaml").write_text("x: 1\n")
    first = sorted((tmp_path / "templates").glob("*.yaml"))[0]
    first.write_text(first.read_text() + "# edited\n")
    assert main(["--check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "old.example.io.yaml" in out and first.name in out and "make crds" in out
    main([str(tmp_path)])
    assert stale_files(tmp_path) == [] and not (tmp_path / "templates" / "old.example.io.yaml").exists()
