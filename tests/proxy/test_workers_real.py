"""Real path: the server pod's proxy runs with ProxyConfig concurrency 2 (two worker processes
sharing 15001/15006 with SO_REUSEPORT), on the proxy tests' mesh (real identity, iptables
capture, real apps). Connections spread over both workers, requests keep working over mTLS
and plaintext, the parent's metrics add the workers up, a killed worker comes back, and the
workers die with the parent."""
from __future__ import annotations

import json
import os
import signal
import sys

import pytest
from proxy_mesh import CLIENT_ID, Mesh, open_mesh
from proxy_netns import PROXY_GID, http_get, stop, wait_for

pytestmark = pytest.mark.root

CONNECTIONS = 24


def dump(mesh: Mesh) -> dict:
    status, body = http_get(f"http://{mesh.b.ip}:15000/config_dump", timeout=10)
    assert status == 200, body
    return json.loads(body)


def metric(text: str, name: str, **labels: str) -> float:
    from meshlet.proxy.workermetrics import total

    return total(text, name, **labels)


def worker_pids(mesh: Mesh) -> list[int]:
    return [w["pid"] for w in dump(mesh)["workers"]]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    tmp = tmp_path_factory.mktemp("workers")
    with open_mesh(tmp) as m:
        restart_with_concurrency(m, 2)
        yield m


def restart_with_concurrency(mesh: Mesh, n: int) -> None:
    """Replace pod b's proxy by one with MESHLET_PROXY_CONCURRENCY=n (same identity and control plane)."""
    cfg = dump(mesh)["config"]
    old = next(p for p in mesh.b.procs if "meshlet.proxy" in p.args)
    stop(old)
    mesh.b.procs.remove(old)
    env = {
        "MESHLET_PROXY_IDENTITY": cfg["identity"], "MESHLET_PROXY_TOKEN_FILE": cfg["token_file"],
        "MESHLET_PROXY_TRUST_ANCHORS": cfg["trust_anchors"],
        "MESHLET_PROXY_DESTINATION_ADDR": cfg["destination_addr"],
        "MESHLET_PROXY_IDENTITY_ADDR": cfg["identity_addr"], "MESHLET_PROXY_NAMESPACE": cfg["namespace"],
        "MESHLET_PROXY_POD": cfg["pod"], "MESHLET_PROXY_SERVICE_ACCOUNT": cfg["service_account"],
        "MESHLET_PROXY_POD_IP": cfg["pod_ip"], "MESHLET_PROXY_CONCURRENCY": str(n),
    }
    log = mesh.tmp / "proxy-b-workers.log"
    mesh.net.start(mesh.b, [sys.executable, "-m", "meshlet.proxy"], log, env=env, gid=PROXY_GID)
    wait_for(lambda: http_get(f"http://{mesh.b.ip}:15000/ready", timeout=5)[0] == 200,
             "proxy with workers ready", log=log)


def requests_from(pod, url: str, n: int) -> list[int]:
    """`n` requests, each on a new connection (so SO_REUSEPORT may pick either worker)."""
    code = ("import urllib.request,json\n"
            f"out=[urllib.request.urlopen({url!r}, timeout=10).status for _ in range({n})]\n"
            "print(json.dumps(out))")
    r = pod.python(code, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_two_workers_share_the_listeners_and_serve(mesh: Mesh) -> None:
    d = dump(mesh)
    assert d["concurrency"] == 2 and d["config"]["concurrency"] == 2
    pids = [w["pid"] for w in d["workers"]]
    assert len(set(pids)) == 2 and all(pids)
    assert d["ready"] is True and all(w["ready"] for w in d["workers"])
    # the listeners belong to the workers, admin to the parent
    r = mesh.b.run("ss", "-ltnpH")
    lines = r.stdout.splitlines()
    for port in (15001, 15006):
        owners = {int(x) for ln in lines if f":{port} " in ln for x in _pids(ln)}
        assert owners == set(pids), (port, r.stdout)
    admin_owners = {int(x) for ln in lines if ":15000 " in ln for x in _pids(ln)}
    assert admin_owners and not admin_owners & set(pids)


def _pids(ss_line: str) -> list[str]:
    import re

    return re.findall(r"pid=(\d+)", ss_line)


def test_connections_spread_over_both_workers_and_metrics_add_up(mesh: Mesh) -> None:
    before = dump(mesh)["workers"]
    # meshed client: mTLS into b's inbound; unmeshed client: plaintext into b's inbound
    assert requests_from(mesh.a, f"http://{mesh.b.ip}:8080/w", CONNECTIONS) == [200] * CONNECTIONS
    assert requests_from(mesh.c, f"http://{mesh.b.ip}:8080/w", CONNECTIONS) == [200] * CONNECTIONS
    after = dump(mesh)["workers"]
    served = [a["request_total"] - b["request_total"] for a, b in zip(after, before, strict=True)]
    assert all(n > 0 for n in served), served  # both worker processes accepted connections
    assert sum(served) == 2 * CONNECTIONS
    status, text = http_get(f"http://{mesh.b.ip}:15090/metrics")
    assert status == 200
    total = metric(text, "request_total", direction="inbound")
    assert total == sum(w["request_total"] for w in after)  # the parent sums the workers
    assert metric(text, "request_total", direction="inbound", tls="true", client_id=CLIENT_ID) >= CONNECTIONS
    assert metric(text, "response_total", direction="inbound", status_code="200") >= 2 * CONNECTIONS
    assert metric(text, "proxy_workers") == 2
    assert "# TYPE response_latency_ms histogram" in text


def test_a_killed_worker_is_restarted(mesh: Mesh) -> None:
    victim = worker_pids(mesh)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: (p := worker_pids(mesh)[0]) is not None and p != victim and dump(mesh)["ready"],
             "worker 0 restarted and ready", timeout=60, interval=0.2)
    assert dump(mesh)["workers"][0]["restarts"] == 1
    _, text = http_get(f"http://{mesh.b.ip}:15090/metrics")
    assert metric(text, "proxy_worker_restart_total") == 1
    assert requests_from(mesh.c, f"http://{mesh.b.ip}:8080/again", 8) == [200] * 8


def test_workers_die_with_the_parent(mesh: Mesh) -> None:
    pids = worker_pids(mesh)
    proc = next(p for p in mesh.b.procs if "meshlet.proxy" in p.args)
    # `ip netns exec` execs, so the Popen pid is the parent proxy itself
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    wait_for(lambda: not any(alive(p) for p in pids), "workers gone after the parent was killed",
             timeout=30, interval=0.1)
    stop(proc)
