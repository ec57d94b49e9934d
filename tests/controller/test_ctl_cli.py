"""apply/get/delete through click's CliRunner and through the real `meshlet` executable."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from meshlet.controller.cli.get import human_duration
from meshlet.controller.cli.main import cli
from meshlet.controller.model import ContainerStatus, PodStatus
from meshlet.controller.store import SqliteStore

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: bookinfo
  labels: {istio-injection: enabled}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: bookinfo-reviews, namespace: bookinfo}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo, labels: {app: reviews}}
spec:
  selector: {app: reviews}
  ports:
  - {port: 9080, name: http}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec:
      serviceAccountName: bookinfo-reviews
      containers:
      - name: reviews
        image: examples-bookinfo-reviews-v1
        ports: [{containerPort: 9080}]
"""

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1-abc12
  namespace: bookinfo
  labels: {app: reviews, version: v1}
  annotations: {meshlet.io/proxy: injected}
spec:
  serviceAccountName: bookinfo-reviews
  containers: [{name: reviews}, {name: meshlet-proxy}]
"""


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "bookinfo.yaml").write_text(MANIFEST)
    return d


def run(state: Path, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--state-dir", str(state), *args], input=input)


def test_get_without_a_mesh_says_so(state: Path) -> None:
    result = run(state, "get", "pods")
    assert result.exit_code == 1
    assert f"no local mesh at {state}: run `meshlet up`" in result.output


def test_apply_prints_kubectl_lines_and_is_idempotent(state: Path, manifests: Path) -> None:
    result = run(state, "apply", "-f", str(manifests))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "namespace/bookinfo created", "serviceaccount/bookinfo-reviews created",
        "service/reviews created", "deployment.apps/reviews-v1 created"]
    result = run(state, "apply", "-f", str(manifests / "bookinfo.yaml"))
    assert result.output.splitlines()[-1] == "deployment.apps/reviews-v1 unchanged"
    changed = MANIFEST.replace("port: 9080, name: http", "port: 9081, name: http")
    result = run(state, "apply", "-f", "-", input=changed)
    assert "service/reviews configured" in result.output.splitlines()


def test_apply_to_an_unusable_state_dir_is_a_clear_error(tmp_path: Path, manifests: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run(blocker / "state", "apply", "-f", str(manifests))
    assert result.exit_code == 1 and result.output.startswith(f"error: store {blocker}/state/store.db: ")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "store.db").write_bytes(b"this is not a database" * 100)
    result = run(corrupt, "get", "pods")
    assert result.exit_code == 1 and "file is not a database" in result.output


def test_apply_error_changes_nothing(state: Path, manifests: Path) -> None:
    (manifests / "zz-bad.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: bad}\n"
                                           "spec:\n  ports:\n  - port: abc\n")
    result = run(state, "apply", "-f", str(manifests))
    assert result.exit_code == 1
    assert f"error: {manifests}/zz-bad.yaml: document 1: spec.ports[0].port: expected integer, got 'abc'" \
        in result.output
    assert run(state, "get", "ns", "bookinfo").exit_code == 1  # nothing applied (store may not even exist)

    result = run(state, "apply", "-f", "-", input="apiVersion: v1\nkind: Service\n"
                 "metadata: {name: s, namespace: ghost}\nspec: {ports: [{port: 80}]}\n")
    assert result.exit_code == 1
    assert "error: service/s: namespace 'ghost' not found" in result.output


def test_get_tables_and_formats(state: Path, manifests: Path) -> None:
    assert run(state, "apply", "-f", str(manifests)).exit_code == 0
    assert run(state, "apply", "-f", "-", input=POD).exit_code == 0

    async def set_status() -> None:
        store = SqliteStore(state / "store.db")
        try:
            pod = await store.get("Pod", "bookinfo", "reviews-v1-abc12")
            assert pod is not None
            await store.update_status(pod.with_status(PodStatus(
                phase="Running", pod_ip="198.18.0.9", ready=True,
                container_statuses=(ContainerStatus("reviews", True, 1), ContainerStatus("meshlet-proxy", True, 2)))))
        finally:
            await store.close()
    asyncio.run(set_status())

    result = run(state, "get", "pods", "-n", "bookinfo")
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "IP", "AGE"]
    assert row.split()[:5] == ["reviews-v1-abc12", "2/2", "Running", "3", "198.18.0.9"]

    wide = run(state, "get", "po", "-n", "bookinfo", "-o", "wide").output.splitlines()
    assert wide[0].split()[-2:] == ["SERVICEACCOUNT", "MESHED"]
    assert wide[1].split()[-2:] == ["bookinfo-reviews", "yes"]

    svc = run(state, "get", "svc", "-A").output.splitlines()
    assert svc[0].split() == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "AGE"]
    assert svc[1].split()[:5] == ["bookinfo", "reviews", "ClusterIP", "198.19.0.2", "9080/TCP"]

    as_yaml = yaml.safe_load(run(state, "get", "svc", "reviews", "-n", "bookinfo", "-o", "yaml").output)
    assert as_yaml["kind"] == "Service" and as_yaml["spec"]["clusterIP"] == "198.19.0.2"
    as_json = json.loads(run(state, "get", "deploy", "-n", "bookinfo", "-o", "json").output)
    assert as_json["kind"] == "List" and as_json["items"][0]["metadata"]["name"] == "reviews-v1"

    names = run(state, "get", "svc,deploy", "-n", "bookinfo", "-o", "name").output.splitlines()
    assert names == ["service/reviews", "deployment.apps/reviews-v1"]

    missing = run(state, "get", "svc", "nope", "-n", "bookinfo")
    assert missing.exit_code == 1 and 'services "nope" not found' in missing.output
    empty = run(state, "get", "pods")
    assert empty.exit_code == 0 and "No resources found in default namespace." in empty.output
    unknown = run(state, "get", "servics")
    assert unknown.exit_code == 1 and "did you mean 'services'?" in unknown.output


def test_apply_with_namespace_and_get_all(state: Path) -> None:
    assert run(state, "apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n").exit_code == 0
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n"
    result = run(state, "apply", "-n", "team", "-f", "-", input=svc)
    assert result.exit_code == 0 and result.output == "service/web created\n"
    assert run(state, "apply", "-f", "-", input=POD.replace("bookinfo", "team")).exit_code == 0
    lines = run(state, "get", "all", "-n", "team").output.splitlines()
    assert lines[0].split()[:2] == ["NAME", "READY"] and lines[1].startswith("pod/reviews-v1-abc12")
    assert lines[3].split()[:2] == ["NAME", "TYPE"] and lines[4].startswith("service/web")


def test_delete_by_name_and_by_file(state: Path, manifests: Path) -> None:
    assert run(state, "apply", "-f", str(manifests)).exit_code == 0
    result = run(state, "delete", "svc", "reviews", "-n", "bookinfo")
    assert result.exit_code == 0 and result.output == "service/reviews deleted\n"
    again = run(state, "delete", "svc", "reviews", "-n", "bookinfo")
    assert again.exit_code == 1 and 'services "reviews" not found' in again.output
    assert run(state, "delete", "svc", "reviews", "-n", "bookinfo", "--ignore-not-found").exit_code == 0
    result = run(state, "delete", "-f", str(manifests), "--ignore-not-found")
    assert result.exit_code == 0
    assert result.output.splitlines() == ["serviceaccount/bookinfo-reviews deleted",
                                          "deployment.apps/reviews-v1 deleted", "namespace/bookinfo deleted"]
    assert run(state, "get", "ns").output.split()[-3:-1] == ["default", "Active"]


def test_human_duration() -> None:
    assert [human_duration(s) for s in (5, 119, 200, 600, 7200, 36000, 200000)] == \
        ["5s", "119s", "3m20s", "10m", "120m", "10h", "2d"]


def test_real_meshlet_executable(state: Path, manifests: Path) -> None:
    env = {**os.environ, "MESHLET_STATE_DIR": str(state)}
    installed = shutil.which("meshlet")  # the console script `pip install -e .` created
    exe = [installed] if installed else [sys.executable, "-m", "meshlet.controller.cli.main"]

    def meshlet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*exe, *args], env=env, capture_output=True, text=True, timeout=120)

    first = meshlet("get", "svc")
    assert first.returncode == 1 and "run `meshlet up`" in first.stderr
    applied = meshlet("apply", "-f", str(manifests))
    assert applied.returncode == 0, applied.stderr
    assert "deployment.apps/reviews-v1 created" in applied.stdout
    got = meshlet("get", "svc", "-n", "bookinfo")
    assert got.returncode == 0 and "198.19.0.2" in got.stdout
    bad = meshlet("apply", "-f", str(manifests / "nope.yaml"))
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "no such file" in bad.stderr


def test_get_watch_shows_changes_as_they_happen(state: Path, manifests: Path) -> None:
    """`meshlet get svc -w` as a real process: the listing, then a line per change made by another process."""
    assert run(state, "apply", "-f", str(manifests)).exit_code == 0
    env = {**os.environ, "MESHLET_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}
    installed = shutil.which("meshlet")
    exe = [installed] if installed else [sys.executable, "-m", "meshlet.controller.cli.main"]
    proc = subprocess.Popen([*exe, "get", "svc", "-n", "bookinfo", "-w"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    guard = threading.Timer(90, proc.kill)  # a missing line ends readline() with "" instead of hanging
    guard.start()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split()[:2] == ["NAME", "TYPE"]
        assert proc.stdout.readline().split()[:3] == ["reviews", "ClusterIP", "198.19.0.2"]
        changed = MANIFEST.replace("port: 9080, name: http", "port: 9081, name: http")
        assert run(state, "apply", "-f", "-", input=changed).exit_code == 0
        assert run(state, "apply", "-f", "-", input=MANIFEST.replace("name: reviews, namespace: bookinfo, labels",
                                                                   "name: ratings, namespace: bookinfo, labels")
                   ).exit_code == 0
        assert proc.stdout.readline().split()[3] == "9081/TCP"
        assert proc.stdout.readline().split()[:3] == ["ratings", "ClusterIP", "198.19.0.3"]
    finally:
        guard.cancel()
        proc.terminate()
        proc.communicate(timeout=30)  # also closes the pipes
