"""`meshlet check` in Kubernetes mode against the real API server: `--pre` for the admin and
for a user without grants, a full check after `meshlet install | apply` (Deployments become
available only when the test writes their status: no controller-manager here), a missing
component, and `--proxy` with no proxies and with a proxy that is not ready."""
from __future__ import annotations

import pytest
from crds_helpers import ensure_crds
from install_helpers import (
    apply,
    check_json,
    delete_cluster_objects,
    docs_of,
    failures,
    fresh_name,
    mark_available,
    meshlet,
    results,
)
from kubernetes_asyncio import client as kclient
from meshlet.e2e.kubeapi import KubeAPIServer

pytestmark = pytest.mark.kube


def test_pre_passes_for_the_admin(kube_api: KubeAPIServer) -> None:
    rc, report = check_json("--pre", "--kubeconfig", str(kube_api.kubeconfig), "-L", fresh_name("absent"))
    assert rc == 0, report
    assert [c["categoryName"] for c in report["categories"]] == [
        "kubernetes-api", "kubernetes-version", "pre-kubernetes-setup"]
    got = results(report)
    assert got[("pre-kubernetes-setup", "can create non-namespaced resources")]["result"] == "success"
    assert got[("pre-kubernetes-setup", "no clock skew detected")]["result"] == "success"


def test_pre_fails_clearly_for_a_user_without_grants(kube_api: KubeAPIServer) -> None:
    rc, report = check_json("--pre", "--kubeconfig", str(kube_api.kubeconfig_for("viewer")), "-L", fresh_name("absent"))
    assert rc == 1
    bad = failures(report)
    create = bad[("pre-kubernetes-setup", "can create non-namespaced resources")]
    assert "this user cannot create namespaces" in create["error"] and "clusterroles" in create["error"]
    assert create["hint"] == "docs/troubleshooting.md#pre-rbac"
    assert "forbidden" in bad[("pre-kubernetes-setup", "control plane namespace does not already exist")]["error"]
    assert ("kubernetes-api", "can query the Kubernetes API") not in bad


def test_pre_fails_when_the_namespace_exists(kube_api: KubeAPIServer, kube_ns: str) -> None:
    rc, report = check_json("--pre", "--kubeconfig", str(kube_api.kubeconfig), "-L", kube_ns)
    assert rc == 1
    assert "already exists" in failures(report)[("pre-kubernetes-setup", "control plane namespace does not already exist")]["error"]


async def test_check_after_install(kube_api: KubeAPIServer, kube_client: kclient.ApiClient) -> None:
    await ensure_crds(kube_client)
    ns = fresh_name("mc")
    out = meshlet("install", "-n", ns)
    assert out.returncode == 0, out.stderr
    kc = str(kube_api.kubeconfig)
    try:
        await apply(kube_client, docs_of(out.stdout))

        # Deployments exist but nothing runs them: × with the hint, everything else √
        rc, report = check_json("--kubeconfig", kc, "-L", ns)
        assert rc == 1
        bad = failures(report)
        assert list(bad) == [("meshlet-existence", "control plane Deployments are available")], bad
        entry = bad[("meshlet-existence", "control plane Deployments are available")]
        assert "meshlet-destination (0/1 available)" in entry["error"]
        assert entry["hint"] == "docs/troubleshooting.md#k8s-cp-available"

        # what the deployment controller would write: now every check passes
        await mark_available(kube_client, ns, [f"meshlet-{c}" for c in ("destination", "identity", "injector")])
        rc, report = check_json("--kubeconfig", kc, "-L", ns)
        assert rc == 0, failures(report)
        names = [c["categoryName"] for c in report["categories"]]
        assert names == ["kubernetes-api", "kubernetes-version", "meshlet-existence", "meshlet-config",
                         "meshlet-identity", "meshlet-webhooks", "meshlet-version"]
        assert all(ch["result"] == "success" for ch in results(report).values()), results(report)

        # a missing component is a clear failure
        await kclient.AppsV1Api(kube_client).delete_namespaced_deployment("meshlet-identity", ns)
        rc, report = check_json("--kubeconfig", kc, "-L", ns)
        assert rc == 1
        missing = failures(report)[("meshlet-existence", "control plane Deployments exist")]
        assert missing["error"] == f"missing Deployments in {ns}: meshlet-identity"
        assert missing["hint"] == "docs/troubleshooting.md#k8s-cp-deployments"
        table = meshlet("check", "--kubeconfig", kc, "-L", ns)
        assert "× control plane Deployments exist" in table.stdout
        assert "see docs/troubleshooting.md#k8s-cp-deployments for hints" in table.stdout

        # a broken webhook certificate: the caBundle no longer matches the serving certificate
        other = docs_of(meshlet("install", "-n", ns).stdout)
        hook = next(d for d in other if d["kind"] == "MutatingWebhookConfiguration")
        await apply(kube_client, [hook])
        rc, report = check_json("--kubeconfig", kc, "-L", ns)
        cert = failures(report)[("meshlet-webhooks", "proxy-injector webhook has valid cert")]
        assert "does not verify against the webhook's caBundle" in cert["error"]
    finally:
        await delete_cluster_objects(kube_client, ns)


async def test_proxy_with_no_proxies_and_a_proxy_not_ready(kube_api: KubeAPIServer, kube_client: kclient.ApiClient,
                                                           kube_ns: str) -> None:
    await ensure_crds(kube_client)
    ns = fresh_name("mp")
    out = meshlet("install", "-n", ns)
    assert out.returncode == 0, out.stderr
    kc = str(kube_api.kubeconfig)
    try:
        await apply(kube_client, docs_of(out.stdout))
        await mark_available(kube_client, ns, [f"meshlet-{c}" for c in ("destination", "identity", "injector")])

        # a control plane of another version is a warning (‼), not a failure
        await kclient.AppsV1Api(kube_client).patch_namespaced_deployment(
            "meshlet-destination", ns, {"metadata": {"labels": {"meshlet.io/control-plane-version": "0.0.1"}}})
        rc, report = check_json("--kubeconfig", kc, "-L", ns, "--proxy", "-n", kube_ns)
        version = results(report)[("meshlet-version", "control plane and cli versions match")]
        assert version["result"] == "warning" and "meshlet-destination 0.0.1" in version["error"]
        assert rc == 1
        bad = failures(report)
        assert list(bad) == [("meshlet-data-plane", "data plane proxies are ready")], bad
        assert bad[("meshlet-data-plane", "data plane proxies are ready")]["error"] == \
            f'no "meshlet-proxy" containers found in the {kube_ns} namespace'

        rc, report = check_json("--kubeconfig", kc, "-L", ns, "--proxy", "-n", fresh_name("nowhere"))
        assert ("meshlet-data-plane", "data plane namespace exists") in failures(report)

        # a pod with a proxy (labelled out of injection: the webhook has no running injector here)
        pod = kclient.V1Pod(
            metadata=kclient.V1ObjectMeta(name="app", labels={"meshlet.io/inject": "false"}),
            spec=kclient.V1PodSpec(containers=[kclient.V1Container(name="app", image="meshlet:dev"),
                                               kclient.V1Container(name="meshlet-proxy", image="meshlet:dev")]))
        await kclient.CoreV1Api(kube_client).create_namespaced_pod(kube_ns, pod)
        rc, report = check_json("--kubeconfig", kc, "-L", ns, "--proxy", "-n", kube_ns)
        assert rc == 1
        ready = failures(report)[("meshlet-data-plane", "data plane proxies are ready")]
        assert ready["error"] == f"proxy not ready: {kube_ns}/app"
        assert ready["hint"] == "docs/troubleshooting.md#dp-proxy-ready"
    finally:
        await delete_cluster_objects(kube_client, ns)
