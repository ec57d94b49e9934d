"""The Kubernetes-mode make targets, as `make -n` prints them (Docker, kind and a cluster are not here)."""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _dry(*targets: str) -> str:
    proc = subprocess.run(["make", "-n", "-C", str(ROOT), *targets, "PYTHON=python3", "HOME=/nonexistent"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_install_builds_loads_installs_both_charts_and_checks() -> None:
    out = _dry("install")
    steps = ["docker build -t meshlet/meshlet:", "kind load docker-image --name kind meshlet/meshlet:",
             "meshlet install -n meshlet --values-out /nonexistent/.meshlet/kube-values.yaml",
             "helm upgrade --install meshlet-crds helm/meshlet-crds --wait",
             "helm upgrade --install meshlet-control-plane helm/meshlet-control-plane -n meshlet --create-namespace",
             "rollout status deploy", "meshlet check --mode kube -L meshlet"]
    positions = [out.find(s) for s in steps]
    assert all(p >= 0 for p in positions), list(zip(steps, positions, strict=True))
    assert positions == sorted(positions)
    assert "meshlet:dev" in out  # the tag the sample manifests use


def test_uninstall_and_e2e_kube() -> None:
    out = _dry("uninstall")
    assert "helm uninstall meshlet-control-plane -n meshlet" in out and "helm uninstall meshlet-crds" in out
    out = _dry("e2e-kube")
    assert "kubectl apply -f e2e/apps/bookinfo/" in out
    assert "meshlet check --proxy -n bookinfo -L meshlet" in out


def test_chart_target_regenerates_the_chart() -> None:
    assert "python3 -m meshlet.controller.cli.install_chart" in _dry("chart")
