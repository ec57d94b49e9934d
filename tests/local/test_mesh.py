"""The local mesh through the real path: `meshlet up/exec/logs/check/down` as root.

One isolated mesh per module (random bridge, netns prefix and /24 ranges, a
temp state dir) runs tests/local/data/mesh.yaml: an unmeshed namespace `plain`
and a meshed one (`istio-injection: enabled`) with the real proxy.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .meshenv import DATA, MeshEnv, is_root, new_mesh_env

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(not is_root(), reason="needs root (netns, iptables)")]

READY_TIMEOUT = 150


def wait_for(predicate, timeout: float, what: str, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def store_call(mesh: MeshEnv, fn):
    """Run `fn(store)` against the mesh's store (in this process)."""
    from meshlet.controller.store import open_local_store

    async def go():
        store = open_local_store(_cfg(mesh), create=False)
        try:
            return await fn(store)
        finally:
            await store.close()
    return asyncio.run(go())


def _cfg(mesh: MeshEnv):
    from meshlet.controller.config import LocalConfig

    return LocalConfig(state_dir=mesh.state_dir, bridge=mesh.bridge, netns_prefix=mesh.prefix,
                       pod_cidr=ipaddress.IPv4Network(f"198.18.{mesh.octet}.0/24"),
                       service_cidr=ipaddress.IPv4Network(f"198.19.{mesh.octet}.0/24"))


def pods(mesh: MeshEnv) -> list:
    async def fn(store):
        return (await store.list("Pod"))[0]
    return store_call(mesh, fn)


def web_pods(mesh: MeshEnv) -> list:
    return [p for p in pods(mesh) if p.name.startswith("web-")]


def ours(mesh: MeshEnv) -> dict[str, list[str]]:
    """Every kernel object and process of this mesh that is still around."""
    netns = [l.split()[0] for l in subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout.splitlines()
             if l.startswith(mesh.prefix)]
    links = [l for l in subprocess.run(["ip", "-o", "link", "show"], check=False, capture_output=True, text=True).stdout.splitlines()
             if f": {mesh.prefix}" in l or f": {mesh.bridge}" in l]
    etc = [p.name for p in Path("/etc/netns").glob(f"{mesh.prefix}*")] if Path("/etc/netns").exists() else []
    procs = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(mesh.state_dir) in cmd and "pytest" not in cmd:
                procs.append(f"{entry.name}: {cmd}")
    routes = [l for l in subprocess.run(["ip", "route"], check=False, capture_output=True, text=True).stdout.splitlines()
              if mesh.bridge in l]
    return {k: v for k, v in {"netns": netns, "links": links, "etc": etc, "procs": procs, "routes": routes}.items() if v}


def exec_(mesh: MeshEnv, ns: str, target: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return mesh.meshlet("exec", "-n", ns, target, "--", *cmd, timeout=60)


def curl(mesh: MeshEnv, ns: str, target: str, url: str) -> str:
    return exec_(mesh, ns, target, "curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", url).stdout


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    env = new_mesh_env(tmp_path_factory.mktemp("mesh"))
    try:
        up = env.meshlet("up", "-f", str(DATA / "mesh.yaml"), "--timeout", str(READY_TIMEOUT), timeout=READY_TIMEOUT + 60)
        assert up.returncode == 0, f"meshlet up failed:\n{up.stdout}\n{up.stderr}"
        assert "meshlet down" in up.stdout
        yield env
    finally:
        env.meshlet("down", "--purge", timeout=120)
        # belt and braces: never leave anything behind, even if down is broken
        for ns in ours(env).get("netns", []):
            subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["ip", "link", "del", env.bridge], check=False, capture_output=True)


def test_up_gives_every_pod_an_address(mesh):
    cidr = ipaddress.IPv4Network(f"198.18.{mesh.octet}.0/24")
    got = pods(mesh)
    assert sorted((p.namespace, p.name.rsplit("-", 1)[0]) for p in got) == [
        ("meshed", "caller"), ("meshed", "web"), ("meshed", "web"), ("plain", "client")]
    ips = [ipaddress.IPv4Address(p.status.pod_ip) for p in got]
    assert len(set(ips)) == 4 and all(ip in cidr and ip != next(cidr.hosts()) for ip in ips)
    assert all(p.status.ready and p.status.phase == "Running" for p in got)
    meshed = {p.name: p.metadata.annotations.get("meshlet.io/proxy") for p in got}
    assert [v for k, v in sorted(meshed.items()) if not k.startswith("client")] == ["injected"] * 3
    assert meshed[next(k for k in meshed if k.startswith("client"))] is None
    for p in got:
        token = mesh.state_dir / "pods" / p.namespace / p.name / "token"
        assert token.stat().st_mode & 0o777 == 0o600


def test_names_resolve_inside_a_pod(mesh):
    async def services(store):
        return {(s.namespace, s.name): s.spec.cluster_ip for s in (await store.list("Service"))[0]}
    vips = store_call(mesh, services)
    for name, want in (("web.meshed", vips[("meshed", "web")]),
                       ("web.meshed.svc.cluster.local", vips[("meshed", "web")]),
                       ("client", vips[("plain", "client")])):
        out = exec_(mesh, "plain", "deploy/client", "getent", "hosts", name)
        assert out.returncode == 0 and out.stdout.split()[0] == want, (name, out.stdout, out.stderr)
    # short names only in the pod's own namespace
    assert exec_(mesh, "plain", "deploy/client", "getent", "hosts", "web").returncode != 0


def _inbound_requests(mesh: MeshEnv) -> int:
    import urllib.request

    total = 0
    for p in pods(mesh):
        if not p.name.startswith("web-"):
            continue
        text = urllib.request.urlopen(f"http://{p.status.pod_ip}:15090/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            name = line.split("{", 1)[0]
            if name.endswith(("request_total", "requests_total")) and 'direction="inbound"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_unmeshed_pod_reaches_meshed_pods_through_the_vip_and_their_proxy(mesh):
    before = _inbound_requests(mesh)
    for _ in range(3):
        assert curl(mesh, "plain", "deploy/client", "http://web.meshed/") == "200"
    # the meshed side's inbound proxies saw the requests: the iptables capture works
    assert _inbound_requests(mesh) >= before + 3


def test_meshed_pod_reaches_unmeshed_service_through_its_proxy(mesh):
    assert curl(mesh, "meshed", "deploy/web", "http://client.plain/") == "200"


def _metric_sum(ip: str, *labels: str) -> int:
    import urllib.request

    text = urllib.request.urlopen(f"http://{ip}:15090/metrics", timeout=5).read().decode()
    total = 0
    for line in text.splitlines():
        name = line.split("{", 1)[0]
        if name.endswith(("request_total", "requests_total")) and all(lb in line for lb in labels):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_meshed_to_meshed_goes_over_mtls(mesh):
    caller = next(p for p in pods(mesh) if p.name.startswith("caller-"))
    # warm-up: a fresh proxy may pass the very first request through before discovery answers
    assert curl(mesh, "meshed", f"pod/{caller.name}", "http://web/") == "200"
    before = _metric_sum(caller.status.pod_ip, 'direction="outbound"', 'tls="true"')
    for _ in range(3):
        assert curl(mesh, "meshed", f"pod/{caller.name}", "http://web/") == "200"
    assert _metric_sum(caller.status.pod_ip, 'direction="outbound"', 'tls="true"') >= before + 3


def test_exec_runs_as_uid_1000_and_propagates_the_exit_code(mesh):
    out = exec_(mesh, "plain", "deploy/client", "id", "-u")
    assert out.returncode == 0 and out.stdout.strip() == "1000"
    assert exec_(mesh, "plain", "deploy/client", "sh", "-c", "exit 7").returncode == 7
    missing = mesh.meshlet("exec", "-n", "plain", "no-such-pod", "--", "true")
    assert missing.returncode == 1 and "no-such-pod" in missing.stderr


def test_logs(mesh):
    curl(mesh, "plain", "deploy/client", "http://client/")
    app = wait_for(lambda: (r := mesh.meshlet("logs", "-n", "plain", "deploy/client")).returncode == 0
                   and "GET /" in r.stderr + r.stdout and r, 30, "the request in the app log")
    assert "GET /" in app.stdout
    proxy = mesh.meshlet("logs", "-n", "meshed", "deploy/web", "-c", "proxy")
    assert proxy.returncode == 0 and proxy.stdout
    bad = mesh.meshlet("logs", "-n", "plain", "deploy/client", "-c", "proxy")
    assert bad.returncode == 1 and "no 'proxy' log" in bad.stderr


def test_logs_follow(mesh):
    import select
    import sys

    follow = subprocess.Popen([sys.executable, "-m", "meshlet.controller.cli.main", "logs", "-f", "--tail", "0",
                               "-n", "plain", "deploy/client"], env=mesh.env, stdout=subprocess.PIPE)
    try:
        # the follower may start after the request: keep asking until a new line shows up
        deadline = time.monotonic() + 60
        seen = b""
        while b"/followed" not in seen:
            assert time.monotonic() < deadline, f"no new log line seen; got {seen!r}"
            curl(mesh, "plain", "deploy/client", "http://client/followed")
            ready, _, _ = select.select([follow.stdout], [], [], 2.0)
            if ready:
                seen += os.read(follow.stdout.fileno(), 65536)  # type: ignore[union-attr]
    finally:
        follow.kill()
        follow.wait()


def test_check_passes_on_a_healthy_mesh(mesh):
    out = mesh.meshlet("check", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Status check results are √" in out.stdout
    data = json.loads(mesh.meshlet("check", "-o", "json", timeout=120).stdout)
    assert data["success"] is True
    names = [c["categoryName"] for c in data["categories"]]
    assert names == ["meshlet-local-runtime", "meshlet-control-plane", "meshlet-identity", "meshlet-data-plane"]
    assert all(c["result"] == "success" for cat in data["categories"] for c in cat["checks"])


def test_scale_update_and_delete_are_reconciled(mesh):
    from dataclasses import replace

    def scale(n: int) -> None:
        async def fn(store):
            d = await store.get("Deployment", "meshed", "web")
            await store.apply([replace(d.with_meta(resource_version=0), spec=replace(d.spec, replicas=n))])
        store_call(mesh, fn)

    scale(3)
    wait_for(lambda: len([p for p in web_pods(mesh) if p.status.ready]) == 3, 90, "3 web pods")
    scale(1)
    wait_for(lambda: len(web_pods(mesh)) == 1, 90, "1 web pod")
    left = [p.name for p in web_pods(mesh)]

    async def tokens(store):
        return sorted(t.name for t in (await store.list("WorkloadToken", "meshed"))[0] if t.name.startswith("web-"))
    assert store_call(mesh, tokens) == left
    netns = ours(mesh)["netns"]
    assert len([n for n in netns if "meshed-web-" in n]) == 1
    # the Service now has one endpoint, still reachable
    assert curl(mesh, "plain", "deploy/client", "http://web.meshed/") == "200"


def test_crashed_app_is_restarted_and_counted(mesh):
    client = next(p for p in pods(mesh) if p.namespace == "plain")
    netns = f"{mesh.prefix}plain-{client.name}"
    pids = subprocess.run(["ip", "netns", "pids", netns], check=False, capture_output=True, text=True).stdout.split()
    assert pids, f"no processes in {netns}"
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)

    def restarted():
        p = next(p for p in pods(mesh) if p.name == client.name)
        return p.status.ready and p.status.container_statuses[0].restart_count >= 1
    wait_for(restarted, 60, "the app to be restarted and ready again")
    assert curl(mesh, "plain", "deploy/client", "http://client/") == "200"


def test_services_and_pod_changes_are_reconciled(mesh):
    from dataclasses import replace

    from meshlet.controller.model import load_text

    extra = load_text("""
apiVersion: v1
kind: Service
metadata: {name: client2, namespace: plain}
spec:
  selector: {app: client}
  ports: [{port: 81, targetPort: 8080}]
""")

    async def add(store):
        await store.apply(extra)
    store_call(mesh, add)
    # the hosts files are rewritten and the DNAT chain follows
    wait_for(lambda: exec_(mesh, "plain", "deploy/client", "getent", "hosts", "client2").returncode == 0,
             30, "client2 to resolve")
    # processes already running see it too (their /etc/hosts is a bind mount of the same file)
    web = web_pods(mesh)[0]
    app_pids = subprocess.run(["ip", "netns", "pids", f"{mesh.prefix}meshed-{web.name}"], check=False,
                              capture_output=True, text=True).stdout.split()
    views = [Path(f"/proc/{pid}/root/etc/hosts").read_text() for pid in app_pids]
    assert views and all("client2.plain" in v for v in views)
    assert curl(mesh, "meshed", "deploy/web", "http://client2.plain:81/") == "200"

    # a Pod deleted from the store is replaced
    victim = next(p for p in pods(mesh) if p.namespace == "plain")

    async def delete(store):
        await store.delete("Pod", "plain", victim.name)
    store_call(mesh, delete)
    wait_for(lambda: [p.name for p in pods(mesh) if p.namespace == "plain" and p.status.ready
                      and p.name != victim.name], 90, "a replacement pod")
    assert not Path(f"/run/netns/{mesh.prefix}plain-{victim.name}").exists()

    # a template change rolls the Deployment to new pods
    old = {p.name for p in pods(mesh) if p.namespace == "plain"}

    async def update(store):
        d = await store.get("Deployment", "plain", "client")
        tpl = d.spec.template
        c = replace(tpl.spec.containers[0], env=(*tpl.spec.containers[0].env, _env("ROLL", "1")))
        await store.apply([replace(d.with_meta(resource_version=0), spec=replace(
            d.spec, template=replace(tpl, spec=replace(tpl.spec, containers=(c,)))))])
    store_call(mesh, update)

    def rolled():
        now = [p for p in pods(mesh) if p.namespace == "plain"]
        return len(now) == 1 and now[0].name not in old and now[0].status.ready
    wait_for(rolled, 90, "the rollout")
    assert curl(mesh, "meshed", "deploy/web", "http://client.plain/") == "200"


def _env(name: str, value: str):
    from meshlet.controller.model import EnvVar

    return EnvVar(name=name, value=value)


def test_readiness_probe_runs_inside_the_pod_and_drives_endpoints(mesh, tmp_path):
    from meshlet.controller.model import load_text

    www = tmp_path / "www"
    www.mkdir()
    extra = load_text(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: probed, namespace: plain}}
spec:
  selector: {{matchLabels: {{app: probed}}}}
  template:
    metadata: {{labels: {{app: probed}}}}
    spec:
      containers:
      - name: app
        command: [python, -m, http.server, "8081", --directory, "{www}"]
        ports: [{{containerPort: 8081}}]
        readinessProbe: {{httpGet: {{path: /ready.txt, port: 8081}}, failureThreshold: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: probed, namespace: plain}}
spec:
  selector: {{app: probed}}
  ports: [{{port: 80, targetPort: 8081}}]
""")

    def probed_ready():
        return [p.status.ready for p in pods(mesh) if p.name.startswith("probed-")]

    async def add(store):
        await store.apply(extra)
    store_call(mesh, add)
    try:
        wait_for(lambda: probed_ready() and probed_ready()[0] is False and (
            next(p for p in pods(mesh) if p.name.startswith("probed-")).status.container_statuses[0].state == "running"),
            60, "the probed app to run")
        # listening but its probe answers 404: not ready, so the Service has no endpoint (connection reset)
        assert probed_ready() == [False]
        assert curl(mesh, "plain", "deploy/client", "http://probed/") == "000"
        (www / "ready.txt").write_text("ok")
        wait_for(lambda: probed_ready() == [True], 30, "the probe to pass")
        assert curl(mesh, "plain", "deploy/client", "http://probed/ready.txt") == "200"
        (www / "ready.txt").unlink()
        wait_for(lambda: probed_ready() == [False], 30, "the probe to fail again")
    finally:
        async def delete(store):
            await store.delete("Deployment", "plain", "probed")
            await store.delete("Service", "plain", "probed")
        store_call(mesh, delete)


def test_up_on_a_running_mesh_only_applies(mesh):
    up = mesh.meshlet("up", "-f", str(DATA / "mesh.yaml"), timeout=READY_TIMEOUT + 60)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "already running" in up.stdout


def test_up_times_out_with_the_failing_pods_log(mesh, tmp_path):
    crash = tmp_path / "crash.yaml"
    crash.write_text("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: crasher, namespace: plain}
spec:
  selector: {matchLabels: {app: crasher}}
  template:
    metadata: {labels: {app: crasher}}
    spec:
      containers:
      - name: app
        command: [python, -c, "print('boom: no config'); raise SystemExit(3)"]
        ports: [{containerPort: 9000}]
""")
    try:
        up = mesh.meshlet("up", "-f", str(crash), "--timeout", "8", timeout=120)
        assert up.returncode == 1
        assert "deployment plain/crasher: 0/1 ready" in up.stderr
        assert "boom: no config" in up.stderr and "app.log" in up.stderr
    finally:
        async def delete(store):
            await store.delete("Deployment", "plain", "crasher")
        store_call(mesh, delete)
    wait_for(lambda: not [p for p in pods(mesh) if p.name.startswith("crasher")], 60, "crasher pods to go")


def test_check_fails_when_destination_dies_and_up_recovers_from_state(mesh):
    rt = json.loads((mesh.state_dir / "runtime.json").read_text())
    os.kill(rt["processes"]["destination"]["pid"], signal.SIGKILL)
    out = wait_for(lambda: (r := mesh.meshlet("check", timeout=120)).returncode == 1 and r, 30, "check to fail")
    assert "× destination process is running" in out.stdout
    assert "see docs/troubleshooting.md#cp-destination-running for hints" in out.stdout
    assert "Status check results are ×" in out.stdout
    # `up` without manifests restarts the whole mesh from the store: the workloads come back
    up = mesh.meshlet("up", "--timeout", str(READY_TIMEOUT), timeout=READY_TIMEOUT + 60)
    assert up.returncode == 0, up.stdout + up.stderr
    got = pods(mesh)
    # replicas as last applied (mesh.yaml again, by the previous test): 2 web, 1 caller, 1 client
    assert sorted(p.namespace for p in got) == ["meshed"] * 3 + ["plain"] and all(p.status.ready for p in got)
    assert curl(mesh, "plain", "deploy/client", "http://web.meshed/") == "200"


def test_down_leaves_nothing_behind_even_after_a_runtime_crash(mesh):
    # the runtime dies without stopping its pods: their processes and namespaces are orphaned
    rt = json.loads((mesh.state_dir / "runtime.json").read_text())
    os.kill(rt["processes"]["runtime"]["pid"], signal.SIGKILL)
    assert ours(mesh).get("netns")
    down = mesh.meshlet("down", timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    assert ours(mesh) == {}
    assert (mesh.state_dir / "store.db").exists() and (mesh.state_dir / "identity" / "ca.crt").exists()
    # the rules lived in the pods' namespaces, which are gone; the host nat table has nothing of ours
    host_rules = subprocess.run(["iptables-save"], check=False, capture_output=True, text=True).stdout
    assert mesh.bridge not in host_rules and f"198.18.{mesh.octet}." not in host_rules


def test_up_refuses_a_bad_manifest_before_starting_anything(tmp_path):
    env = new_mesh_env(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n")
    out = env.meshlet("up", "-f", str(bad), timeout=60)
    assert out.returncode == 1 and "error:" in out.stderr and "replicas" in out.stderr
    assert ours(env) == {}


def test_local_verbs_require_root(monkeypatch):
    from click.testing import CliRunner
    from meshlet.controller.cli.main import cli

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    for verb in (["up", "-f", str(DATA)], ["down"], ["exec", "x", "--", "true"]):
        out = CliRunner().invoke(cli, verb)
        assert out.exit_code == 1 and "must run as root" in out.output, (verb, out.output)


def test_up_fails_cleanly_when_the_control_plane_cannot_start(tmp_path):
    import socket

    env = new_mesh_env(tmp_path)
    gateway = f"198.18.{env.octet}.1"
    subprocess.run(["ip", "link", "add", env.bridge, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{gateway}/24", "dev", env.bridge], check=True)
        subprocess.run(["ip", "link", "set", env.bridge, "up"], check=True)
        squatter = socket.socket()
        squatter.bind((gateway, 8086))  # destination's gRPC port
        squatter.listen(1)
        try:
            up = env.meshlet("up", "-f", str(DATA / "mesh.yaml"), "--timeout", "60", timeout=180)
        finally:
            squatter.close()
        assert up.returncode == 1
        assert "destination exited during start-up" in up.stderr, up.stderr
        assert "destination.log" in up.stderr
        assert [p for p in ours(env).get("procs", [])] == []
    finally:
        env.meshlet("down", "--purge", timeout=120)
    assert ours(env) == {}
