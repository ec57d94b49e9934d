"""The runtime's reconcile logic against a real SQLite store, with fake pods (no netns, no processes)."""
from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest
import structlog
from meshlet.controller.config import LocalConfig
from meshlet.controller.local.pod import ContainerState, PodState, RuntimeSettings
from meshlet.controller.local.runtime import Runtime
from meshlet.controller.model import load_text
from meshlet.controller.store import open_local_store

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata: {name: demo, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: app, command: [python, -m, http.server, "8080"], ports: [{containerPort: 8080, name: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"""


class FakePod:
    """Stands in for LocalPod: records what the runtime asks of it."""

    def __init__(self, settings, deploy, name, *, ip, meshed, on_change, log, render, proxy=None):
        self.settings, self.deploy, self.name, self.ip, self.meshed = settings, deploy, name, ip, meshed
        self.proxy_settings = proxy
        self.namespace = deploy.namespace
        self.render = render
        self.state = PodState(containers=[ContainerState(c.name) for c in deploy.containers])
        self.proxy = None
        self.proxy_ready = False
        self.started_at = "2026-01-01T00:00:00Z"
        self.failed_at = None
        self.started = self.stopped = False
        self.network: tuple[str, str, str] | None = None

    @property
    def key(self):
        return (self.namespace, self.name)

    def start(self):
        self.started = True
        self.state.phase = "Running"

    async def stop(self):
        self.stopped = True

    async def refresh_network(self):
        self.network = self.render(self)

    def proxy_restarts(self):
        return 0

    def set_ready(self, ready=True):
        self.state.ready = ready
        self.proxy_ready = ready
        for c in self.state.containers:
            c.ready = c.running = ready


@pytest.fixture
async def env(tmp_path: Path):
    cfg = LocalConfig(state_dir=tmp_path, pod_cidr=ipaddress.IPv4Network("198.18.250.0/24"),
                      service_cidr=ipaddress.IPv4Network("198.19.250.0/24"))
    store = open_local_store(cfg)
    await store.apply(load_text(MANIFEST))
    runtime = Runtime(RuntimeSettings(local=cfg), store, log=structlog.get_logger(), pod_factory=FakePod)
    yield runtime, store
    await store.close()


def live(runtime: Runtime) -> list[FakePod]:
    return sorted(runtime.pods.values(), key=lambda p: p.name)  # type: ignore[arg-type,return-value]


async def test_pods_are_created_with_tokens_and_records(env):
    runtime, store = env
    await runtime.reconcile()
    pods = live(runtime)
    assert len(pods) == 2 and all(p.started and p.meshed for p in pods)
    assert len({p.ip for p in pods}) == 2
    assert all(p.name.startswith("web-") and len(p.name) == len("web-") + 5 for p in pods)
    records, _ = await store.list("Pod", "demo")
    assert sorted(r.name for r in records) == [p.name for p in pods]
    assert all(r.metadata.annotations["meshlet.io/proxy"] == "injected" for r in records)
    tokens, _ = await store.list("WorkloadToken", "demo")
    for t in tokens:
        path = runtime.cfg.state_dir / "pods" / "demo" / t.name / "token"
        import hashlib

        assert hashlib.sha256(path.read_bytes()).hexdigest() == t.spec.token_sha256
        assert path.stat().st_mode & 0o777 == 0o600
    # nothing is ready yet: the Service has no endpoints, so its port is rejected
    hosts, _, tables = pods[0].network
    assert "web.demo.svc.cluster.local web.demo web" in hosts
    assert "DNAT" not in tables and "REJECT" in tables


async def test_ready_pods_become_endpoints_and_deployment_status(env):
    runtime, store = env
    await runtime.reconcile()
    for p in live(runtime):
        p.set_ready()
    await runtime.reconcile()
    _, _, tables = live(runtime)[0].network
    assert tables.count("-j DNAT --to-destination") == 2 and ":8080" in tables
    dep = await store.get("Deployment", "demo", "web")
    assert (dep.status.replicas, dep.status.ready_replicas, dep.status.updated_replicas) == (2, 2, 2)
    pod = await store.get("Pod", "demo", live(runtime)[0].name)
    assert pod.status.ready and pod.status.pod_ip == str(live(runtime)[0].ip)


async def test_template_change_rolls_once_new_pods_are_ready(env):
    runtime, store = env
    await runtime.reconcile()
    old = live(runtime)
    for p in old:
        p.set_ready()
    dep = await store.get("Deployment", "demo", "web")
    tpl = dep.spec.template
    new_tpl = replace(tpl, metadata=replace(tpl.metadata, annotations={"rev": "2"}))
    await store.apply([replace(dep.with_meta(resource_version=0), spec=replace(dep.spec, template=new_tpl))])
    await runtime.reconcile()
    assert len(runtime.pods) == 4 and not any(p.stopped for p in old)  # old ones serve until new are ready
    new = [p for p in live(runtime) if p not in old]
    for p in new:
        p.set_ready()
    await runtime.reconcile()
    assert all(p.stopped for p in old) and set(live(runtime)) == set(new)
    assert sorted(r.name for r in (await store.list("Pod", "demo"))[0]) == sorted(p.name for p in new)


async def test_scale_down_stops_unready_pods_first_and_releases_addresses(env):
    runtime, store = env
    await runtime.reconcile()
    a, b = live(runtime)
    a.set_ready()
    dep = await store.get("Deployment", "demo", "web")
    await store.apply([replace(dep.with_meta(resource_version=0), spec=replace(dep.spec, replicas=1))])
    await runtime.reconcile()
    assert live(runtime) == [a] and b.stopped
    assert runtime.ipam.allocated() == [f"demo/{a.name}"]
    assert [t.name for t in (await store.list("WorkloadToken", "demo"))[0]] == [a.name]


async def test_namespace_label_change_replaces_pods_and_bad_deployments_do_not_block(env):
    runtime, store = env
    bad = load_text("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken, namespace: demo}
spec:
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec: {containers: [{name: app, args: [no-command]}]}
""")
    await store.apply(bad)
    await runtime.reconcile()
    assert {p.deploy.name for p in live(runtime)} == {"web"}
    ns = await store.get("Namespace", None, "demo")
    await store.apply([ns.with_meta(resource_version=0, labels={})])
    await runtime.reconcile()
    assert [p.meshed for p in live(runtime)].count(False) == 2


async def test_pod_deleted_from_store_is_replaced_and_deleted_deployment_stops_all(env):
    runtime, store = env
    await runtime.reconcile()
    victim = live(runtime)[0]
    await store.delete("Pod", "demo", victim.name)
    await runtime.reconcile()
    assert victim.stopped and len(runtime.pods) == 2 and victim.key not in runtime.pods
    await store.delete("Deployment", "demo", "web")
    await runtime.reconcile()
    assert runtime.pods == {} and (await store.list("Pod"))[0] == []
