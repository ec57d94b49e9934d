"""meshlet's CRDs in a real kube-apiserver: they install and become Established, the seed's
examples are accepted at every apiVersion they use (seed spellings kept, not pruned) and
read back the same, and the API server's own schema validation (fieldValidation=Strict, as
kubectl) rejects wrong types, unknown fields and missing required fields naming the field."""
from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.client.exceptions import ApiException

from meshlet.controller.model import DEFAULT_REGISTRY
from meshlet.controller.model.crd import render_crds
from meshlet.controller.store.kube.translate import from_kube
from meshlet.e2e.kubeapi import KubeTools
from meshlet.e2e.seeds import SEED_EXAMPLES
from crds_helpers import ensure_crds, wait_served

pytestmark = pytest.mark.kube

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "meshlet-crds"
INFO = {info.kind: info for info in DEFAULT_REGISTRY}


def seed_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(SEED_EXAMPLES.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc and doc.get("kind") in INFO and INFO[doc["kind"]].group.endswith(".istio.io"):
                docs.append((f"{path.name}#{i}", json.loads(json.dumps(doc))))  # JSON: integer keys as strings
    return docs


SEED_DOCS = seed_documents()
GOOD_DOCS = [(n, d) for n, d in SEED_DOCS if not n.startswith("16-")]


def coords(doc: dict[str, Any]) -> tuple[str, str, str]:
    group, _, version = doc["apiVersion"].rpartition("/")
    return group, version, INFO[doc["kind"]].plural


async def create(api: kclient.ApiClient, ns: str, doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
    group, version, plural = coords(doc)
    return await kclient.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, ns, plural, doc, field_validation="Strict", **kw)


async def rejection(api: kclient.ApiClient, ns: str, doc: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(ApiException) as info:
        await create(api, ns, doc)
    return info.value.status, json.loads(info.value.body)["message"]


async def test_every_crd_installs_and_becomes_established(kube_client: kclient.ApiClient) -> None:
    crds = await ensure_crds(kube_client)
    assert len(crds) == len(render_crds()) == 13
    for crd, want in zip(crds, render_crds(), strict=True):
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions.get("NamesAccepted") == "True" and conditions.get("Established") == "True"
        assert "NonStructuralSchema" not in conditions, crd.status.conditions
        assert "KubernetesAPIApprovalPolicyConformant" not in conditions or \
            conditions["KubernetesAPIApprovalPolicyConformant"] == "True"
        storage = next(v["name"] for v in want["spec"]["versions"] if v["storage"])
        assert crd.status.stored_versions == [storage]
        assert crd.status.accepted_names.short_names == want["spec"]["names"].get("shortNames")
        assert crd.status.accepted_names.categories == want["spec"]["names"]["categories"]
        for v in want["spec"]["versions"]:
            await wait_served(kube_client, want["spec"]["group"], v["name"], want["spec"]["names"]["plural"])


@pytest.mark.parametrize(("name", "doc"), GOOD_DOCS, ids=[f"{n}:{d['kind']}" for n, d in GOOD_DOCS])
async def test_seed_example_is_accepted_and_reads_back(kube_client: kclient.ApiClient, kube_ns: str,
                                                       name: str, doc: dict[str, Any]) -> None:
    await ensure_crds(kube_client)
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = kube_ns  # the seed's namespaces (istio-system, production) need not exist
    created = await create(kube_client, kube_ns, doc)
    assert created["spec"] == doc["spec"]  # nothing pruned: the seed spellings (mTLS, headers, ...) are kept
    group, version, plural = coords(doc)
    objects = kclient.CustomObjectsApi(kube_client)
    for other in (v.rpartition("/")[2] for v in INFO[doc["kind"]].api_versions):
        read = await objects.get_namespaced_custom_object(group, other, kube_ns, plural, doc["metadata"]["name"])
        assert read["apiVersion"] == f"{group}/{other}" and read["spec"] == doc["spec"]
    # what meshlet's Kubernetes store reads from the cluster decodes with the model (seed spellings too)
    resource = from_kube(DEFAULT_REGISTRY, INFO[doc["kind"]], read)
    assert resource.metadata.name == doc["metadata"]["name"]
    if doc["kind"] == "PeerAuthentication":
        assert resource.spec.mode == "STRICT"  # the seed's `mTLS:` kept: not a silent PERMISSIVE
    if doc["kind"] == "RequestAuthentication":
        rule = resource.spec.jwt_rules[0]
        assert [(h.name, h.prefix) for h in rule.from_headers] == [("Authorization", "Bearer ")]
        assert [(c.header, c.claim) for c in rule.output_claim_to_headers] == [("X-User-Email", "email")]


async def test_meshconfig_is_cluster_scoped(kube_client: kclient.ApiClient) -> None:
    await ensure_crds(kube_client)
    body = {"apiVersion": "meshlet.io/v1alpha1", "kind": "MeshConfig", "metadata": {"name": "default"},
            "spec": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}, "trustDomain": "cluster.local"}}
    objects = kclient.CustomObjectsApi(kube_client)
    created = await objects.create_cluster_custom_object("meshlet.io", "v1alpha1", "meshconfigs", body,
                                                         field_validation="Strict", dry_run="All")
    assert created["spec"] == body["spec"]
    body["spec"]["outboundTrafficPolicy"]["mode"] = "ALLOW_ALL"
    with pytest.raises(ApiException) as info:
        await objects.create_cluster_custom_object("meshlet.io", "v1alpha1", "meshconfigs", body,
                                                   field_validation="Strict", dry_run="All")
    assert info.value.status == 422 and "spec.outboundTrafficPolicy.mode" in info.value.body


def vs(spec: dict[str, Any], version: str = "v1") -> dict[str, Any]:
    return {"apiVersion": f"networking.istio.io/{version}", "kind": "VirtualService",
            "metadata": {"name": "bad"}, "spec": spec}


ROUTE = [{"destination": {"host": "reviews"}}]
# Schema violations are 422 Invalid naming the field; unknown fields under fieldValidation=Strict are
# 400 BadRequest ("strict decoding error: unknown field ...") naming the field, as kubectl shows them.
INVALID = [
    ("wrong type", vs({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"},
                                                                  "weight": "ten"}]}]}),
     422, "spec.http[0].route[0].weight"),
    ("wrong type v1alpha3", vs({"hosts": "reviews", "http": [{"route": ROUTE}]}, "v1alpha3"), 422, "spec.hosts"),
    ("unknown field", vs({"hosts": ["reviews"], "http": [{"rout": ROUTE}]}), 400, "spec.http[0].rout"),
    ("unknown seed-like field", {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
                                 "metadata": {"name": "bad"}, "spec": {"mTLs": {"mode": "STRICT"}}}, 400, "spec.mTLs"),
    ("missing required", {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                          "metadata": {"name": "bad"}, "spec": {"subsets": [{"name": "v1"}]}}, 422, "spec.host"),
    ("missing required nested", {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                                 "metadata": {"name": "bad"},
                                 "spec": {"servers": [{"port": {"number": 80}, "hosts": ["*"]}]}},
     422, "spec.servers[0].port.protocol"),
    ("bad enum", {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "bad"},
                  "spec": {"host": "r", "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"}}}},
     422, "spec.trafficPolicy.loadBalancer.simple"),
    ("port keys", {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "bad"},
                   "spec": {"portLevelMtls": {"http": {"mode": "DISABLE"}}}}, 422, "spec.portLevelMtls"),
    ("missing spec", {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                      "metadata": {"name": "bad"}}, 422, "spec"),
]


@pytest.mark.parametrize(("what", "doc", "status", "field"), INVALID, ids=[i[0] for i in INVALID])
async def test_invalid_objects_are_rejected_naming_the_field(kube_client: kclient.ApiClient, kube_ns: str, what: str,
                                                             doc: dict[str, Any], status: int, field: str) -> None:
    await ensure_crds(kube_client)
    code, message = await rejection(kube_client, kube_ns, doc)
    assert code == status and field in message, (code, message)


async def test_seed_fragment_is_rejected(kube_client: kclient.ApiClient, kube_ns: str) -> None:
    await ensure_crds(kube_client)
    [(_, fragment)] = [(n, d) for n, d in SEED_DOCS if n.startswith("16-")]
    code, message = await rejection(kube_client, kube_ns, fragment)
    assert code == 422 and "metadata.name" in message or "name or generateName is required" in message, message


def test_helm_lint_is_clean_and_template_renders_the_crds(kube_tools: KubeTools, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HELM_CACHE_HOME": str(tmp_path / "cache"),
           "HELM_CONFIG_HOME": str(tmp_path / "config"), "HELM_DATA_HOME": str(tmp_path / "data")}
    lint = subprocess.run([str(kube_tools.helm), "lint", "--strict", str(CHART)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "0 chart(s) failed" in lint.stdout and "[WARNING]" not in lint.stdout and "[ERROR]" not in lint.stdout
    rendered = subprocess.run([str(kube_tools.helm), "template", "meshlet-crds", str(CHART)],
                              capture_output=True, text=True, timeout=120, env=env)
    assert rendered.returncode == 0, rendered.stderr
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs = [d for d in yaml.load_all(rendered.stdout, Loader=loader) if d]
    key = lambda c: c["metadata"]["name"]  # noqa: E731
    assert sorted(docs, key=key) == sorted(render_crds(), key=key)


TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


async def table(api: kclient.ApiClient, path: str) -> dict[str, Any]:
    """What `kubectl get` receives: the server-side Table with the CRD's printer columns."""
    return await api.call_api(path, "GET", header_params={"Accept": TABLE}, response_types_map={200: "object"},
                              auth_settings=["BearerToken"], _return_http_data_only=True)


async def test_kubectl_get_shows_istios_columns_and_names(kube_client: kclient.ApiClient, kube_ns: str) -> None:
    await ensure_crds(kube_client)
    [(_, doc)] = [(n, d) for n, d in GOOD_DOCS if n.startswith("09-") and d["kind"] == "VirtualService"]
    await create(kube_client, kube_ns, copy.deepcopy(doc))
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "reviews"},
          "spec": {"host": "reviews"}}
    await create(kube_client, kube_ns, dr)
    vs_table = await table(kube_client, f"/apis/networking.istio.io/v1alpha3/namespaces/{kube_ns}/virtualservices")
    assert [c["name"] for c in vs_table["columnDefinitions"]] == ["Name", "Gateways", "Hosts", "Age"]
    [row] = vs_table["rows"]
    assert row["cells"][:3] == ["api-virtualservice", '["istio-system/ingress-gateway"]', '["api.example.com"]']
    dr_table = await table(kube_client, f"/apis/networking.istio.io/v1/namespaces/{kube_ns}/destinationrules")
    assert [c["name"] for c in dr_table["columnDefinitions"]] == ["Name", "Host", "Age"]
    assert dr_table["rows"][0]["cells"][:2] == ["reviews", "reviews"]
    # discovery: what `kubectl get vs` / `kubectl get istio-io` resolve through
    resources = await kclient.CustomObjectsApi(kube_client).get_api_resources("networking.istio.io", "v1")
    vs_resource = next(r for r in resources.resources if r.name == "virtualservices")
    assert vs_resource.short_names == ["vs"] and vs_resource.categories == ["istio-io", "networking-istio-io"]
    assert "virtualservices/status" in {r.name for r in resources.resources}
