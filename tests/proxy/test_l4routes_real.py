"""Real path of tcp_routes / tls_routes: pod a's proxy (iptables capture) gets profiles from the
Destination stand-in and sends opaque connections, and the app's own TLS by SNI, where they say."""
from __future__ import annotations

import json
import os
import sys

import pytest

from proxy_mesh import NS, SERVER_ID, Mesh, open_mesh
from test_route_real import tls_files

pytestmark = pytest.mark.root

TCP_VIP = "198.18.251.7:2525"  # nothing listens there: only the tcp_routes get a connection through
TLS_VIP = "198.18.251.8:8443"
SUBSET_VIP = "198.18.251.9:2525"


def svc(name: str, port: int) -> str:
    return f"{name}.{NS}.svc.cluster.local:{port}"


@pytest.fixture(scope="module")
def l4mesh(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    tmp = tmp_path_factory.mktemp("l4mesh")
    files = tls_files(tmp)

    def endpoints(a, b, c):  # noqa: ANN001, ANN202
        def one(name: str, ip: str, port: int, identity: str = "") -> dict:
            ep = {"ip": ip, "port": port, **({"identity": identity} if identity else {})}
            return {"labels": {"dst_service": name, "dst_namespace": NS}, "endpoints": [ep]}
        return {svc("tcpb", 2525): one("tcpb", b.ip, 2525, SERVER_ID), svc("tcpc", 2525): one("tcpc", c.ip, 2525),
                svc("tlsb", 8443): one("tlsb", b.ip, 8443, SERVER_ID), svc("tlsc", 8443): one("tlsc", c.ip, 8443),
                svc("both", 2525): {"labels": {"dst_service": "both", "dst_namespace": NS}, "endpoints": [
                    {"ip": b.ip, "port": 2525, "identity": SERVER_ID, "pod_labels": {"version": "v1"}},
                    {"ip": c.ip, "port": 2525, "pod_labels": {"version": "v2"}}]}}

    def profiles(a, b, c):  # noqa: ANN001, ANN202
        return {
            TCP_VIP: {"tcpRoutes": [
                {"matches": [{"port": 9}], "backends": [{"authority": "never.example:9"}]},
                {"matches": [{"port": 2525, "destinationSubnets": ["198.18.251.0/24"]}],
                 "backends": [{"authority": svc("tcpb", 2525), "weight": 50},
                              {"authority": svc("tcpc", 2525), "weight": 50}]}]},
            SUBSET_VIP: {"tcpRoutes": [{"backends": [
                {"authority": svc("both", 2525), "subsetLabels": {"version": "v2"}}]}]},
            TLS_VIP: {"tlsRoutes": [
                {"matches": [{"port": 8443, "sniHosts": ["secure.example"]}],
                 "backends": [{"authority": svc("tlsb", 8443)}]},
                {"matches": [{"sniHosts": ["*.other.example"]}], "backends": [{"authority": svc("tlsc", 8443)}]}]},
        }

    with open_mesh(tmp, extra=endpoints, profiles=profiles,
                   app_env={"APPS_TLS_CERT": files["cert"], "APPS_TLS_KEY": files["key"]}) as m:
        m.files = files
        yield m


TCP_CLIENT = """
import json, socket, sys
host, port = sys.argv[1].rsplit(":", 1)
out = []
for _ in range(int(sys.argv[2])):
    s = socket.create_connection((host, int(port)), timeout=30)
    f = s.makefile("rb")
    out.append(f.readline().decode().strip())
    s.sendall(b"ping\\n")
    out.append(f.readline().decode().strip())
    s.close()
print(json.dumps(out))
"""

TLS_CLIENT = """
import json, socket, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False  # the certificate is for secure.example only; routing is what is tested
out = []
for sni in sys.argv[3:]:
    raw = socket.create_connection((host, int(port)), timeout=30)
    s = ctx.wrap_socket(raw, server_hostname=sni)
    s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    out.append(json.loads(data.split(b"\\r\\n\\r\\n", 1)[1])["app"])
    s.close()
print(json.dumps(out))
"""


def test_tcp_routes_split_connections_between_backends(l4mesh: Mesh) -> None:
    r = l4mesh.a.run(sys.executable, "-c", TCP_CLIENT, TCP_VIP, "20", timeout=180)
    assert r.returncode == 0, r.stderr
    lines = json.loads(r.stdout)
    banners, echoes = lines[0::2], lines[1::2]
    assert set(echoes) == {"echo ping"}
    assert set(banners) == {"220 banner from b", "220 banner from c"}, banners


def test_tcp_route_to_a_subset(l4mesh: Mesh) -> None:
    r = l4mesh.a.run(sys.executable, "-c", TCP_CLIENT, SUBSET_VIP, "6", timeout=180)
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)[0::2]) == {"220 banner from c"}


def test_tls_routes_by_sni(l4mesh: Mesh) -> None:
    r = l4mesh.a.run(sys.executable, "-c", TLS_CLIENT, TLS_VIP, l4mesh.files["ca"],
                     "secure.example", "shop.other.example", "secure.example", timeout=180)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == ["b", "c", "b"]
