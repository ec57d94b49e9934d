"""Fixtures for the proxy tests; `mesh` builds the real-path topology (root only)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from proxy_mesh import HERE, NS, SERVER_ID, TRUST_DOMAIN, Mesh, _popen, free_port, proxy_env, write_tokens  # noqa: E402
from proxy_netns import GATEWAY, PROXY_GID, Net, http_get, stop, wait_for, write_json  # noqa: E402


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    tmp = tmp_path_factory.mktemp("mesh")
    net = Net()
    identity = None
    try:
        a = net.add_pod("a", 10, meshed=True)
        b = net.add_pod("b", 11, meshed=True)
        c = net.add_pod("c", 12, meshed=False)
        # identity: the real service, with the pods' workload tokens in its store
        state = tmp / "state"
        state.mkdir()
        tokens = {"a": ("client", os.urandom(16).hex().encode()), "b": ("server", os.urandom(16).hex().encode())}
        write_tokens(state, tokens)
        id_port, id_admin = free_port(GATEWAY), free_port(GATEWAY)
        id_log = tmp / "identity.log"
        identity = _popen([sys.executable, "-m", "meshlet.identity", "--state-dir", str(state),
                           "--listen", f"{GATEWAY}:{id_port}", "--admin-listen", f"{GATEWAY}:{id_admin}",
                           "--trust-domain", TRUST_DOMAIN], id_log)
        wait_for(lambda: http_get(f"http://{GATEWAY}:{id_admin}/ready")[0] == 200, "identity ready", log=id_log)
        anchors = state / "identity" / "ca.crt"
        # destination stand-in
        dst_port = free_port(GATEWAY)
        server_ep = lambda port: {"ip": b.ip, "port": port, "identity": SERVER_ID}  # noqa: E731
        labels = {"dst_service": "server", "dst_namespace": NS}
        fixture = write_json(tmp / "destinations.json", {
            f"{b.ip}:8080": {"labels": labels, "endpoints": [server_ep(8080)]},
            f"server.{NS}.svc.cluster.local:8080": {"labels": labels, "endpoints": [server_ep(8080)]},
            f"{b.ip}:2525": {"labels": labels, "endpoints": [server_ep(2525)]},
            f"{b.ip}:9999": {"labels": labels, "endpoints": [server_ep(9999)]},
            f"empty.{NS}.svc.cluster.local:80": {"labels": labels, "endpoints": []},
            f"plain.{NS}.svc.cluster.local:8080": {"labels": {"dst_service": "plain", "dst_namespace": NS},
                                                  "endpoints": [{"ip": c.ip, "port": 8080}]},
            f"both.{NS}.svc.cluster.local:8080": {"labels": {"dst_service": "both", "dst_namespace": NS},
                                                 "endpoints": [server_ep(8080), {"ip": c.ip, "port": 8080}]},
        })
        mesh = Mesh(net, a, b, c, tmp, anchors, dst_port, fixture, identity=identity)
        mesh.start_destination()
        # workloads
        for pod in (b, c):
            log = tmp / f"apps-{pod.name}.log"
            net.start(pod, [sys.executable, str(HERE / "apps.py"), pod.name], log)
        for pod in (b, c):
            log = tmp / f"apps-{pod.name}.log"
            wait_for(lambda log=log: b"apps ready" in log.read_bytes(), f"apps in {pod.name}", log=log)
        # proxies
        for pod in (a, b):
            sa, token = tokens[pod.name]
            env = proxy_env(tmp, pod, sa, token, id_port, dst_port, anchors)
            net.start(pod, [sys.executable, "-m", "meshlet.proxy"], tmp / f"proxy-{pod.name}.log", env=env,
                      gid=PROXY_GID)
        for pod in (a, b):
            wait_for(lambda pod=pod: http_get(f"http://{pod.ip}:15000/ready", timeout=2)[0] == 200,
                     f"proxy in {pod.name} ready", log=tmp / f"proxy-{pod.name}.log")
        yield mesh
        mesh.stop_destination()
    finally:
        net.close()
        if identity is not None:
            stop(identity)
