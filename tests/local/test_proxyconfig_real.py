"""ProxyConfig through the real local mesh: `meshlet up`, then the seed's ProxyConfig
(root namespace, concurrency 2) applied with `meshlet apply` rolls the meshed pods; their
proxies run two workers sharing the listeners, traffic keeps flowing (plaintext in, mTLS
between meshed pods) and both workers serve it; a workload-level ProxyConfig wins over the
root one. The runtime also hands each proxy its pod labels."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .meshenv import DATA, MeshEnv, is_root, new_mesh_env
from .test_mesh import exec_, pods, wait_for
from meshlet.e2e.seeds import SEED_EXAMPLES

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(not is_root(), reason="needs root (netns, iptables)")]

READY_TIMEOUT = 150
SEED = (SEED_EXAMPLES / "13-proxy-resources.yaml")
ROOT_PC = """apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: default, namespace: istio-system}
spec: {concurrency: 2}
"""
WEB_PC = """apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: web-single, namespace: meshed}
spec:
  selector: {matchLabels: {app: web}}
  concurrency: 1
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    env = new_mesh_env(tmp_path_factory.mktemp("pcmesh"))
    try:
        up = env.meshlet("up", "-f", str(DATA / "proxyconfig.yaml"), "--timeout", str(READY_TIMEOUT),
                         timeout=READY_TIMEOUT + 60)
        assert up.returncode == 0, f"meshlet up failed:\n{up.stdout}\n{up.stderr}"
        yield env
    finally:
        env.meshlet("down", "--purge", timeout=120)
        for ns in subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout.split():
            if ns.startswith(env.prefix):
                subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["ip", "link", "del", env.bridge], check=False, capture_output=True)


def pod_of(mesh: MeshEnv, deploy: str):
    found = [p for p in pods(mesh) if p.name.startswith(deploy + "-")]
    return found[0] if len(found) == 1 else None


def config_dump(ip: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://{ip}:15000/config_dump", timeout=10) as r:
        return json.loads(r.read())


def settled(mesh: MeshEnv, deploy: str, concurrency: int) -> dict | None:
    """The config_dump of the deployment's single ready pod once its proxy has `concurrency`."""
    pod = pod_of(mesh, deploy)
    if pod is None or not pod.status.ready:
        return None
    try:
        d = config_dump(pod.status.pod_ip)
    except OSError:
        return None
    return d if d["config"]["concurrency"] == concurrency and d["ready"] else None


def apply(mesh: MeshEnv, text: str, tmp: Path) -> None:
    f = tmp / "pc.yaml"
    f.write_text(text)
    mesh.meshlet("apply", "-f", str(f), check=True)


def curl_loop(mesh: MeshEnv, ns: str, target: str, url: str, n: int) -> list[str]:
    """`n` requests, each its own connection (a new curl), from inside the pod."""
    script = f'for i in $(seq {n}); do curl -s -m 10 -o /dev/null -w "%{{http_code}}\\n" {url}; done'
    r = exec_(mesh, ns, target, "sh", "-c", script)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.split()


def test_default_is_one_process_with_pod_labels(mesh):
    d = wait_for(lambda: settled(mesh, "web", 1), READY_TIMEOUT, "web ready")
    assert "workers" not in d
    labels = d["config"]["pod_labels"]
    assert labels["app"] == "web" and labels["version"] == "v1" and labels.get("pod-template-hash")


def test_root_proxyconfig_rolls_meshed_pods_to_two_workers(mesh, tmp_path):
    before = {p.name for p in pods(mesh)}
    text = SEED.read_text() if SEED.exists() else ROOT_PC
    docs = [d for d in text.split("\n---\n") if "kind: ProxyConfig" in d]
    apply(mesh, docs[0], tmp_path)
    for deploy in ("web", "caller"):
        d = wait_for(lambda deploy=deploy: settled(mesh, deploy, 2), READY_TIMEOUT, f"{deploy} with 2 workers")
        assert d["concurrency"] == 2 and len({w["pid"] for w in d["workers"]}) == 2
    after = {p.name for p in pods(mesh)}
    client = next(n for n in after if n.startswith("client-"))
    assert client in before  # the unmeshed pod has no proxy: not rolled
    assert not {n for n in after if not n.startswith("client-")} & before

    web_ip = pod_of(mesh, "web").status.pod_ip
    start = [w["request_total"] for w in config_dump(web_ip)["workers"]]
    assert curl_loop(mesh, "plain", "deploy/client", "http://web.meshed/", 16) == ["200"] * 16
    assert curl_loop(mesh, "meshed", "deploy/caller", "http://web/", 16) == ["200"] * 16
    workers = config_dump(web_ip)["workers"]
    served = [w["request_total"] - s for w, s in zip(workers, start, strict=True)]
    assert sum(served) == 32 and all(n > 0 for n in served), served
    import urllib.request

    with urllib.request.urlopen(f"http://{web_ip}:15090/metrics", timeout=10) as r:
        text = r.read().decode()
    from meshlet.proxy.workermetrics import total

    assert total(text, "request_total", direction="inbound") == sum(w["request_total"] for w in workers)
    assert total(text, "request_total", direction="inbound", tls="true") >= 16
    # the tools read the parent's admin as they read a single proxy's
    pc = mesh.meshlet("proxy-config", pod_of(mesh, "caller").name, "secret", "-n", "meshed", timeout=60)
    assert pc.returncode == 0 and "spiffe://" in pc.stdout, pc.stdout + pc.stderr
    check = mesh.meshlet("check", timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def test_workload_proxyconfig_overrides_the_root_one(mesh, tmp_path):
    apply(mesh, WEB_PC, tmp_path)
    d = wait_for(lambda: settled(mesh, "web", 1), READY_TIMEOUT, "web back to one process")
    assert "workers" not in d
    assert settled(mesh, "caller", 2) is not None  # still the root's
    assert curl_loop(mesh, "plain", "deploy/client", "http://web.meshed/", 3) == ["200"] * 3
