"""The scenario switch reaches a real cluster: `pytest e2e/scenarios --mesh-target=kube`.

The scenarios cannot pass here (no kubelet, no container runtime, no control plane
installed), so this checks that the kube target is the one driven: `up` asks the
test API server for the meshlet control plane and fails saying which Deployments
are missing; and that a local-only scenario is reported as not applicable.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from kubernetes_asyncio import client as kclient
from meshlet.e2e.kubeapi import KubeAPIServer

REPO = Path(__file__).resolve().parents[2]


def run_pytest(api: KubeAPIServer, cwd: Path, *args: str, target: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MESHLET_E2E_TARGET", "KUBECONFIG")}
    env.update(MESHLET_E2E_KUBECONFIG=str(api.kubeconfig), MESHLET_E2E_KUBE_READY_TIMEOUT="2",
               MESHLET_E2E_CP_NAMESPACE="meshlet-not-installed")
    if target:
        env["MESHLET_E2E_TARGET"] = target
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_mesh_target_kube_drives_the_cluster(kube_api: KubeAPIServer) -> None:
    proc = run_pytest(kube_api, REPO, "e2e/scenarios/test_bookinfo.py::test_bookinfo_comes_up_meshed",
                      "--mesh-target=kube")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "mesh target: kube" in out
    assert "the meshlet control plane (run `make install`): Deployments not Available" in out, out[-3000:]
    assert "meshlet-not-installed/meshlet-destination: not found" in out, out[-3000:]


def test_local_only_scenario_is_not_applicable_on_kube(kube_api: KubeAPIServer, tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(
        "from meshlet.e2e.scenarios.harness import local_only, new_target\n\n\n"
        "def test_needs_state_dir() -> None:\n"
        "    target = new_target()\n"
        "    target.pods('default')  # reaches the API server: the kube target was built\n"
        "    local_only(target, \"reads a local mesh's state dir\")\n")
    proc = run_pytest(kube_api, tmp_path, "test_probe.py", target="kube")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "not applicable on the kube target: reads a local mesh's state dir" in out, out


async def test_demo_driver_reads_pods_from_the_cluster(kube_api: KubeAPIServer, kube_client: kclient.ApiClient,
                                                       kube_ns: str, tmp_path: Path) -> None:
    await kclient.CoreV1Api(kube_client).create_namespaced_pod(kube_ns, kclient.V1Pod(
        metadata=kclient.V1ObjectMeta(name="only-in-the-cluster"),
        spec=kclient.V1PodSpec(containers=[kclient.V1Container(name="c", image="meshlet/meshlet:test")])))
    env = {k: v for k, v in os.environ.items() if k not in ("MESHLET_E2E_TARGET", "KUBECONFIG")}
    env.update(MESHLET_E2E_KUBECONFIG=str(kube_api.kubeconfig), MESHLET_E2E_TARGET="kube")
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "meshlet.e2e.demo", "-n", kube_ns, "--wait", "0"], cwd=tmp_path,
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"no ready pod with label app=productpage in namespace {kube_ns} after 0s (pods: only-in-the-cluster)"
            in proc.stderr), proc.stderr
