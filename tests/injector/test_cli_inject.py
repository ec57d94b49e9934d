"""`meshlet inject FILE|-`: offline injection of multi-document YAML (through the real CLI entry point)."""
from __future__ import annotations

import subprocess
import sys

import yaml
from click.testing import CliRunner
from meshlet.controller.cli.main import cli

MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {sidecar.istio.io/proxyCPU: 250m, traffic.sidecar.istio.io/excludeInboundPorts: "9100"}
    spec:
      containers: [{name: web, image: nginx}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: job, image: busybox}]
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: db}
  spec:
    serviceName: db
    selector: {matchLabels: {app: db}}
    template:
      metadata: {labels: {app: db, sidecar.istio.io/inject: "false"}}
      spec: {containers: [{name: db, image: postgres}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: tool}
  spec: {containers: [{name: tool, image: busybox}]}
"""


def run(args, stdin=None):
    return CliRunner().invoke(cli, args, input=stdin)


def names(spec, key):
    return [c["name"] for c in spec.get(key) or []]


def test_injects_workloads_and_leaves_the_rest(tmp_path):
    f = tmp_path / "app.yaml"
    f.write_text(MANIFESTS)
    result = run(["inject", str(f)])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert len(docs) == 4
    web = docs[0]["spec"]["template"]
    assert names(web["spec"], "initContainers") == ["meshlet-init", "meshlet-proxy"]
    proxy = web["spec"]["initContainers"][1]
    assert proxy["resources"]["requests"]["cpu"] == "250m"
    assert "9100" in web["spec"]["initContainers"][0]["command"]
    assert docs[0]["metadata"] == {"name": "web", "namespace": "demo"}
    assert docs[1] == yaml.safe_load(MANIFESTS.split("---\n")[1])
    cron = docs[2]["spec"]["jobTemplate"]["spec"]["template"]
    assert "meshlet-proxy" in names(cron["spec"], "initContainers")
    db, tool = docs[3]["items"]
    assert "initContainers" not in db["spec"]["template"]["spec"]
    assert "meshlet-proxy" in names(tool["spec"], "initContainers")
    assert "Deployment/web injected" in result.stderr
    assert "StatefulSet/db skipped" in result.stderr


def test_idempotent_and_stdin():
    once = run(["inject", "-"], MANIFESTS)
    twice = run(["inject", "-"], once.stdout)
    assert twice.exit_code == 0
    assert list(yaml.safe_load_all(twice.stdout)) == list(yaml.safe_load_all(once.stdout))
    assert "already injected" in twice.stderr


def test_no_native_sidecar_flag_and_image():
    result = run(["inject", "--no-native-sidecar", "--proxy-image", "reg/m:2", "-"], MANIFESTS)
    web = next(iter(yaml.safe_load_all(result.stdout)))["spec"]["template"]["spec"]
    assert names(web, "containers") == ["meshlet-proxy", "web"]
    assert web["containers"][0]["image"] == "reg/m:2"


def test_errors_name_the_document():
    bad = MANIFESTS + "---\nkind: Pod\nmetadata: {name: broken, annotations: {sidecar.istio.io/proxyMemory: much}}\n" \
                      "spec: {containers: [{name: a, image: b}]}\n"
    result = run(["inject", "-"], bad)
    assert result.exit_code == 1 and result.stdout == ""
    assert "stdin document 5 Pod/broken" in result.stderr and "sidecar.istio.io/proxyMemory" in result.stderr
    result = run(["inject", "-"], "kind: Deployment\nmetadata: {name: x}\nspec: {}\n")
    assert result.exit_code == 1 and "Deployment/x: no pod template at spec.template" in result.stderr
    result = run(["inject", "-"], "a: [\n")
    assert result.exit_code == 1 and "not YAML" in result.stderr
    result = run(["inject", "/nonexistent/file.yaml"])
    assert result.exit_code == 1 and "/nonexistent/file.yaml" in result.stderr


def test_installed_entry_point(tmp_path):
    f = tmp_path / "pod.yaml"
    f.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: b}]}\n")
    proc = subprocess.run([sys.executable, "-m", "meshlet.controller.cli.main", "inject", str(f)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["spec"]["initContainers"][1]["name"] == "meshlet-proxy"
