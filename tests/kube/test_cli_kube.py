"""`meshlet apply/get/delete` in Kubernetes mode, run as subprocesses against the real test API server."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from crds_helpers import ensure_crds, wait_served
from kubernetes_asyncio import client as kclient
from meshlet.e2e.kubeapi import KubeAPIServer

SEEDS = Path("/work/shared/seeds/examples")
ROOT = Path(__file__).resolve().parents[2]


def _seed(tmp_path: Path, name: str) -> Path:
    """A copy of a seed example (the tests must not depend on the shared folder staying writable)."""
    src = SEEDS / name
    if not src.exists():
        src = ROOT / "examples" / name
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


def meshlet(*args: str | Path, kubeconfig: Path | None, tmp_path: Path,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = [sys.executable, "-m", "meshlet.controller.cli.main", "--state-dir", str(tmp_path / "state"),
            *[str(a) for a in args]]
    if kubeconfig is not None:
        full += ["--kubeconfig", str(kubeconfig)]
    environ = {k: v for k, v in os.environ.items() if k not in ("MESHLET_MODE", "KUBECONFIG")}
    environ.update(env or {})
    return subprocess.run(full, check=False, capture_output=True, text=True, timeout=120, env=environ)


@pytest.fixture
async def crds(kube_client: kclient.ApiClient) -> None:
    await ensure_crds(kube_client)
    await wait_served(kube_client, "networking.istio.io", "v1", "virtualservices")
    await wait_served(kube_client, "networking.istio.io", "v1", "destinationrules")


async def test_apply_get_delete_through_the_api_server(kube_api: KubeAPIServer, kube_ns: str, crds: None,
                                                       tmp_path: Path) -> None:
    kc = kube_api.kubeconfig
    vs, dr = _seed(tmp_path, "01-reviews-route.yaml"), _seed(tmp_path, "02-reviews-destination.yaml")
    svc = tmp_path / "svc.yaml"
    svc.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews"},
                                   "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 9080}]}}))

    r = meshlet("apply", "-f", svc, "-f", vs, "-f", dr, "-n", kube_ns, kubeconfig=kc, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["service/reviews created",
                                     "virtualservice.networking.istio.io/reviews-route created",
                                     "destinationrule.networking.istio.io/reviews-destination created"]

    # the objects are really in the cluster
    custom = kclient.CustomObjectsApi(await _client(kube_api))
    try:
        got = await custom.get_namespaced_custom_object("networking.istio.io", "v1", kube_ns, "virtualservices",
                                                        "reviews-route")
        assert got["spec"]["hosts"] == ["reviews"]
    finally:
        await custom.api_client.close()

    r = meshlet("get", "vs", "-n", kube_ns, kubeconfig=kc, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()
    assert header.split() == ["NAME", "GATEWAYS", "HOSTS", "AGE"]
    assert row.split()[:2] == ["reviews-route", '["reviews"]']

    r = meshlet("get", "vs", "-A", "-o", "yaml", kubeconfig=kc, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    listing = yaml.safe_load(r.stdout)
    mine = [i for i in listing["items"] if i["metadata"]["namespace"] == kube_ns]
    assert [i["metadata"]["name"] for i in mine] == ["reviews-route"]
    assert mine[0]["kind"] == "VirtualService"
    assert mine[0]["spec"]["http"][2]["retries"]["attempts"] == 3

    r = meshlet("get", "dr", "reviews-destination", "-n", kube_ns, "-o", "yaml", kubeconfig=kc, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["spec"]["host"] == "reviews"

    # MESHLET_MODE=kube with $KUBECONFIG selects the cluster too; a second apply changes nothing
    r = meshlet("apply", "-f", vs, "-f", dr, "-n", kube_ns, kubeconfig=None, tmp_path=tmp_path,
                env={"MESHLET_MODE": "kube", "KUBECONFIG": str(kc)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["virtualservice.networking.istio.io/reviews-route unchanged",
                                     "destinationrule.networking.istio.io/reviews-destination unchanged"]

    r = meshlet("delete", "-f", vs, "-n", kube_ns, kubeconfig=kc, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["virtualservice.networking.istio.io/reviews-route deleted"]
    r = meshlet("delete", "dr", "reviews-destination", "-n", kube_ns, kubeconfig=kc, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["destinationrule.networking.istio.io/reviews-destination deleted"]

    r = meshlet("get", "vs,dr", "-n", kube_ns, kubeconfig=kc, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert f"No resources found in {kube_ns} namespace." in r.stderr
    r = meshlet("delete", "vs", "reviews-route", "-n", kube_ns, kubeconfig=kc, tmp_path=tmp_path)
    assert r.returncode == 1
    assert 'virtualservices "reviews-route" not found' in r.stderr

    r = meshlet("get", "pods", "-n", kube_ns, kubeconfig=kc, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "No resources found" in r.stderr


async def test_errors_are_one_clear_line(kube_api: KubeAPIServer, kube_ns: str, crds: None, tmp_path: Path) -> None:
    vs = _seed(tmp_path, "01-reviews-route.yaml")

    # the viewer has no RBAC grants: refused, one line naming the refusal
    r = meshlet("get", "vs", "-n", kube_ns, kubeconfig=kube_api.kubeconfig_for("viewer"), tmp_path=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "403" in lines[0] or "forbidden" in lines[0].lower()
    assert "Traceback" not in r.stderr

    r = meshlet("apply", "-f", vs, "-n", kube_ns, "--validate", "ignore",
                kubeconfig=kube_api.kubeconfig_for("viewer"), tmp_path=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    assert "403" in r.stderr or "forbidden" in r.stderr.lower()

    # unreachable API server: one line
    bad = tmp_path / "unreachable.kubeconfig"
    conf = yaml.safe_load(kube_api.kubeconfig.read_text())
    conf["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    bad.write_text(yaml.safe_dump(conf))
    r = meshlet("get", "vs", "-n", kube_ns, kubeconfig=bad, tmp_path=tmp_path)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: "), r.stderr

    # missing kubeconfig file
    r = meshlet("get", "vs", kubeconfig=tmp_path / "nope", tmp_path=tmp_path)
    assert r.returncode == 1
    assert "nope" in r.stderr and "Traceback" not in r.stderr


async def test_local_mode_stays_the_default(tmp_path: Path) -> None:
    r = meshlet("get", "vs", kubeconfig=None, tmp_path=tmp_path)
    assert r.returncode == 1
    assert "no local mesh" in r.stderr
    r = meshlet("get", "vs", "--mode", "local", "--kubeconfig", tmp_path / "k", kubeconfig=None, tmp_path=tmp_path)
    assert r.returncode == 2
    assert "Kubernetes mode" in r.stderr


async def _client(api: KubeAPIServer) -> kclient.ApiClient:
    from kubernetes_asyncio import config as kconfig

    return await kconfig.new_client_from_config(config_file=str(api.kubeconfig))




async def test_server_rejection_names_the_field(kube_api: KubeAPIServer, kube_ns: str, tmp_path: Path) -> None:
    """What only the API server checks (here an ExternalName Service without externalName): 422, one line."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad"},
                                   "spec": {"type": "ExternalName", "ports": [{"port": 80}]}}))
    r = meshlet("apply", "-f", bad, "-n", kube_ns, kubeconfig=kube_api.kubeconfig, tmp_path=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: service/bad: ") and "spec.externalName" in lines[0]
    r = meshlet("get", "svc", "bad", "-n", kube_ns, kubeconfig=kube_api.kubeconfig, tmp_path=tmp_path)
    assert r.returncode == 1
    assert 'services "bad" not found' in r.stderr
