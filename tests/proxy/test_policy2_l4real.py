"""Real path: VirtualService tcp: routes honour the backend's DestinationRule (load balancer,
maxConnections counting connections, TLS origination) — pod a's opaque connections through its
proxy to b (mTLS) or c (plaintext / TLS from the proxy)."""
from __future__ import annotations

import json

import pytest
from proxy_mesh import NS, SERVER_ID, open_mesh
from proxy_netns import wait_for
from test_route_real import tls_files

pytestmark = pytest.mark.root

L4RR = "198.18.253.1:2525"    # tcp route → rr2 (b, c) with ROUND_ROBIN
L4POOL = "198.18.253.2:2525"  # tcp route → pool2 (b) with maxConnections 1
L4TLS = "198.18.253.3:8443"   # tcp route → tlsorig (c's HTTPS) with tls SIMPLE (origination)


def svc(name: str, port: int) -> str:
    return f"{name}.{NS}.svc.cluster.local:{port}"


@pytest.fixture(scope="module")
def l4p(tmp_path_factory: pytest.TempPathFactory):
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    tmp = tmp_path_factory.mktemp("l4p")
    files = tls_files(tmp)

    def endpoints(a, b, c):
        def one(name: str, *eps: dict) -> dict:
            return {"labels": {"dst_service": name, "dst_namespace": NS}, "endpoints": list(eps)}
        b_ep = lambda port: {"ip": b.ip, "port": port, "identity": SERVER_ID}
        return {svc("rr2", 2525): one("rr2", b_ep(2525), {"ip": c.ip, "port": 2525}),
                svc("pool2", 2525): one("pool2", b_ep(2525)),
                svc("tlsorig", 8443): one("tlsorig", {"ip": c.ip, "port": 8443})}

    def profiles(a, b, c):
        def to(name: str, port: int) -> dict:
            return {"tcpRoutes": [{"backends": [{"authority": svc(name, port)}]}]}
        return {
            L4RR: to("rr2", 2525), L4POOL: to("pool2", 2525), L4TLS: to("tlsorig", 8443),
            svc("rr2", 2525): {"trafficPolicy": {"loadBalancer": {"policy": "LOAD_BALANCER_POLICY_ROUND_ROBIN"}}},
            svc("pool2", 2525): {"trafficPolicy": {"connectionPool": {"maxConnections": 1}}},
            svc("tlsorig", 8443): {"trafficPolicy": {"tls": {
                "mode": "TLS_MODE_SIMPLE", "caCertificates": files["ca"], "sni": "secure.example"}}},
        }

    with open_mesh(tmp, extra=endpoints, profiles=profiles,
                   app_env={"APPS_TLS_CERT": files["cert"], "APPS_TLS_KEY": files["key"]}) as m:
        yield m


def _py(m, code: str) -> object:
    r = m.a.python(code, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_tcp_route_backend_uses_its_round_robin(l4p) -> None:
    host, port = L4RR.split(":")
    got = _py(l4p, f"""
import json, socket
out = []
for _ in range(6):
    s = socket.create_connection(("{host}", {port}), timeout=30)
    out.append(s.makefile("rb").readline().decode().strip())
    s.close()
print(json.dumps(out))
""")
    assert all(x.startswith("220 banner from ") for x in got), got
    assert all(got[i] != got[i + 1] for i in range(len(got) - 1)), got  # b, c, b, c, ...


def test_tcp_max_connections_counts_open_connections(l4p) -> None:
    m = l4p
    host, port = L4POOL.split(":")
    got = _py(m, f"""
import json, socket, time
first = socket.create_connection(("{host}", {port}), timeout=30)
a = first.makefile("rb").readline().decode().strip()
second = socket.create_connection(("{host}", {port}), timeout=30)
b = second.makefile("rb").readline().decode().strip()  # refused: closed without a banner
second.close()
first.close()
c = ""
deadline = time.monotonic() + 20
while not c and time.monotonic() < deadline:  # the slot comes back once the first is closed
    s = socket.create_connection(("{host}", {port}), timeout=30)
    c = s.makefile("rb").readline().decode().strip()
    s.close()
print(json.dumps([a, b, c]))
""")
    assert got[0] == "220 banner from b" and got[1] == "" and got[2] == "220 banner from b", got
    wait_for(lambda: 'kind="connections"' in m.metrics(m.a), "connection overflow counted", timeout=20)


def test_tcp_route_backend_gets_tls_origination(l4p) -> None:
    host, port = L4TLS.split(":")
    got = _py(l4p, f"""
import json, socket, time
s = socket.create_connection(("{host}", {port}), timeout=30)
time.sleep(1.0)  # say nothing first: the proxy treats the connection as opaque
s.sendall(b"GET /tls-origination HTTP/1.0\\r\\nHost: secure.example\\r\\n\\r\\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(json.dumps(data.decode("latin-1")))
""")
    assert got.startswith("HTTP/1.") and " 200 " in got.split("\r\n")[0], got[:300]
    assert '"app": "c"' in got and "/tls-origination" in got
