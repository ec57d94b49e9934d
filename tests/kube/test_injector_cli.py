"""`meshlet inject` output is valid Kubernetes: every injected workload is accepted by a real API server
with strict field validation (unknown or misspelt fields would be rejected), and pods keep their sidecar."""
from __future__ import annotations

import subprocess
import sys

import yaml
from kubernetes_asyncio import client as kclient

MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations:
        traffic.sidecar.istio.io/excludeOutboundIPRanges: 169.254.169.254/32
        sidecar.istio.io/proxyMemoryLimit: 256Mi
        proxy.istio.io/config: "concurrency: 2"
    spec:
      initContainers: [{name: migrate, image: busybox}]
      containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    metadata: {annotations: {sidecar.istio.io/nativeSidecar: "false"}}
    spec:
      restartPolicy: Never
      containers: [{name: job, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: tool}
spec: {containers: [{name: tool, image: busybox}]}
"""


def inject(text: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "meshlet.controller.cli.main", "inject", "-"], input=text,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return list(yaml.safe_load_all(proc.stdout))


async def test_injected_workloads_pass_strict_validation(kube_client: kclient.ApiClient, kube_ns: str) -> None:
    deploy, service, job, pod = inject(MANIFESTS)
    apps, batch, core = kclient.AppsV1Api(kube_client), kclient.BatchV1Api(kube_client), kclient.CoreV1Api(kube_client)
    await apps.create_namespaced_deployment(kube_ns, deploy, field_validation="Strict")
    await core.create_namespaced_service(kube_ns, service, field_validation="Strict")
    await batch.create_namespaced_job(kube_ns, job, field_validation="Strict")
    await core.create_namespaced_pod(kube_ns, pod, field_validation="Strict")

    stored = await apps.read_namespaced_deployment("web", kube_ns)
    spec = stored.spec.template.spec
    assert [c.name for c in spec.init_containers] == ["meshlet-init", "meshlet-proxy", "migrate"]
    assert spec.init_containers[1].restart_policy == "Always"
    assert spec.init_containers[1].resources.limits["memory"] == "256Mi"
    assert {e.name: e.value for e in spec.init_containers[1].env}["MESHLET_PROXY_CONCURRENCY"] == "2"
    assert "169.254.169.254/32" in spec.init_containers[0].command
    stored_job = await batch.read_namespaced_job("once", kube_ns)
    assert [c.name for c in stored_job.spec.template.spec.containers] == ["meshlet-proxy", "job"]
    stored_pod = await core.read_namespaced_pod("tool", kube_ns)
    assert [c.name for c in stored_pod.spec.init_containers] == ["meshlet-init", "meshlet-proxy"]
    assert {v.name for v in stored_pod.spec.volumes} >= {"meshlet-identity-token", "meshlet-trust-roots"}
