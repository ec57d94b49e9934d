"""The control-plane chart through the real helm binary: lint clean with the values
`meshlet install` writes, the chart names its required values, `helm template` renders the
same objects as `meshlet install`, and `helm install` of both charts succeeds against the real
API server."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from install_helpers import (
    check_json,
    delete_cluster_objects,
    docs_of,
    failures,
    helm,
    mark_available,
    meshlet,
)
from kubernetes_asyncio import client as kclient
from meshlet.controller.cli.install import render_control_plane
from meshlet.e2e.kubeapi import KubeAPIServer, KubeTools

pytestmark = pytest.mark.kube

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "meshlet-control-plane"
CRDS_CHART = ROOT / "helm" / "meshlet-crds"


def _values(tmp_path: Path, namespace: str, *sets: str) -> Path:
    out = tmp_path / "values.yaml"
    proc = meshlet("install", "-n", namespace, "--values-out", str(out), *(a for s in sets for a in ("--set", s)))
    assert proc.returncode == 0, proc.stderr
    return out


def _key(d: dict) -> tuple[str, str]:
    return d["kind"], d["metadata"]["name"]


def test_helm_lint_is_clean_with_install_values_and_names_missing_ones(kube_tools: KubeTools, tmp_path: Path) -> None:
    values = _values(tmp_path, "meshlet")
    lint = helm(kube_tools.helm, tmp_path, "lint", "--strict", str(CHART), "-f", str(values))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "0 chart(s) failed" in lint.stdout and "[WARNING]" not in lint.stdout and "[ERROR]" not in lint.stdout
    # helm lint reports missing required values only as [INFO]; rendering without them fails naming one
    bare_lint = helm(kube_tools.helm, tmp_path, "lint", "--strict", str(CHART))
    assert bare_lint.returncode == 0, bare_lint.stdout + bare_lint.stderr
    bare = helm(kube_tools.helm, tmp_path, "template", "x", str(CHART))
    assert bare.returncode != 0
    assert re.search(r"(identity|injector)\.[\w.]+PEM is required \(meshlet install generates it", bare.stderr), bare.stderr


def test_helm_template_equals_meshlet_install(kube_tools: KubeTools, tmp_path: Path) -> None:
    ns = "mesh-tpl"
    values = _values(tmp_path, ns, "injector.failurePolicy=Fail", "destination.replicas=2", "image.tag=dev",
                     "injector.nativeSidecar=on")
    rendered = helm(kube_tools.helm, tmp_path, "template", "meshlet-control-plane", str(CHART), "-n", ns,
                    "-f", str(values))
    assert rendered.returncode == 0, rendered.stderr
    from_helm = sorted(docs_of(rendered.stdout), key=_key)
    from_cli = sorted(render_control_plane(yaml.safe_load(values.read_text()), ns, with_namespace=False), key=_key)
    assert [_key(d) for d in from_helm] == [_key(d) for d in from_cli]
    for a, b in zip(from_helm, from_cli, strict=True):
        assert a == b, _key(a)
    hook = next(d for d in from_helm if d["kind"] == "MutatingWebhookConfiguration")
    assert hook["webhooks"][0]["failurePolicy"] == "Fail"
    dest = next(d for d in from_helm if _key(d) == ("Deployment", "meshlet-destination"))
    assert dest["spec"]["replicas"] == 2
    assert dest["spec"]["template"]["spec"]["containers"][0]["image"] == "meshlet/meshlet:dev"


async def test_helm_install_of_both_charts(kube_tools: KubeTools, kube_api: KubeAPIServer,
                                           kube_client: kclient.ApiClient, kube_ns: str, tmp_path: Path) -> None:
    kc = str(kube_api.kubeconfig)
    # the CRDs may already exist in this API server (other tests create them directly): take them over
    crds = helm(kube_tools.helm, tmp_path, "upgrade", "--install", "meshlet-crds", str(CRDS_CHART), "--kubeconfig", kc,
                "-n", kube_ns, "--take-ownership", "--wait", "--timeout", "120s")
    assert crds.returncode == 0, crds.stdout + crds.stderr
    values = _values(tmp_path, kube_ns)
    try:
        cp = helm(kube_tools.helm, tmp_path, "install", "meshlet-control-plane", str(CHART), "--kubeconfig", kc,
                  "-n", kube_ns, "-f", str(values))
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert f"installed in namespace {kube_ns}" in cp.stdout  # NOTES.txt
        apps = kclient.AppsV1Api(kube_client)
        names = {d.metadata.name for d in (await apps.list_namespaced_deployment(kube_ns)).items}
        assert names == {"meshlet-destination", "meshlet-identity", "meshlet-injector"}
        hook = await kclient.AdmissionregistrationV1Api(kube_client).read_mutating_webhook_configuration(
            f"meshlet-{kube_ns}-proxy-injector")
        assert hook.webhooks[0].failure_policy == "Ignore"
        ext = kclient.ApiextensionsV1Api(kube_client)
        crd = await ext.read_custom_resource_definition("virtualservices.networking.istio.io")
        assert crd.metadata.labels.get("app.kubernetes.io/managed-by") == "Helm"
        # the helm-installed control plane passes meshlet check once its Deployments are available
        await mark_available(kube_client, kube_ns, [f"meshlet-{c}" for c in ("destination", "identity", "injector")])
        rc, report = check_json("--kubeconfig", kc, "-L", kube_ns)
        assert rc == 0, failures(report)
    finally:
        helm(kube_tools.helm, tmp_path, "uninstall", "meshlet-control-plane", "--kubeconfig", kc, "-n", kube_ns)
        await delete_cluster_objects(kube_client, kube_ns)
