"""`python -m meshlet.injector` start-up errors are one clear line and exit 2 (no traceback)."""
from __future__ import annotations

import os
import subprocess
import sys

from .certs import write_self_signed


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
    return subprocess.run([sys.executable, "-m", "meshlet.injector", *args], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


def test_outside_a_pod_without_kubeconfig(tmp_path):
    cert, key, _ = write_self_signed(tmp_path)
    proc = run("--tls-cert", str(cert), "--tls-key", str(key))
    assert proc.returncode == 2 and "not running in a pod" in proc.stderr and "--kubeconfig" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_kubeconfig_and_bad_certificate(tmp_path):
    cert, key, _ = write_self_signed(tmp_path)
    bad = tmp_path / "kubeconfig"
    bad.write_text("just a string\n")
    proc = run("--tls-cert", str(cert), "--tls-key", str(key), "--kubeconfig", str(bad))
    assert proc.returncode == 2 and f"kubeconfig {bad}" in proc.stderr
    proc = run("--tls-cert", str(key), "--tls-key", str(key), "--kubeconfig", str(bad))
    assert proc.returncode == 2 and "serving certificate" in proc.stderr
    proc = run("--tls-cert", str(cert), "--tls-key", str(key), "--proxy-cpu-request", "fast")
    assert proc.returncode == 2 and "cpu_request" in proc.stderr
