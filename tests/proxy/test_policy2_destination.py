"""Real path with the real control plane for the policy2 fields: `python -m meshlet.destination`
translates a VirtualService redirect with `derivePort`, a fault abort with `http2Error`, a
DestinationRule consistent hash on an `httpCookie` with a ttl and one with `h2UpgradePolicy:
UPGRADE`; the client's proxy enforces them (b is v1 and meshed, c v2)."""
from __future__ import annotations

import os

import pytest
from proxy_mesh import HERE, NS, Mesh, open_mesh
from test_route_destination import _pod, rules

pytestmark = pytest.mark.root

HOST = f"web.{NS}.svc.cluster.local:8080"

RULES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-route}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /moved}}]
    redirect: {uri: /new, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {prefix: /refuse}}]
    fault: {abort: {http2Error: REFUSED_STREAM, percentage: {value: 100}}}
    route: [{destination: {host: web}}]
  - route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: user, path: /, ttl: 60s}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: upg}
spec:
  host: upg
  trafficPolicy:
    connectionPool:
      http: {h2UpgradePolicy: UPGRADE}
"""
UPG = f"upg.{NS}.svc.cluster.local:8080"


def _store(a, b, c) -> list:
    from meshlet.controller.model import ObjectMeta, Service, ServicePort, ServiceSpec

    web = Service(metadata=ObjectMeta(name="web", namespace=NS),
                  spec=ServiceSpec(selector={"app": "web"}, ports=(ServicePort(port=8080, name="http"),)))
    upg = Service(metadata=ObjectMeta(name="upg", namespace=NS),
                  spec=ServiceSpec(selector={"version": "v1"}, ports=(ServicePort(port=8080, name="http"),)))
    return [web, upg, _pod("web-v1", b.ip, "v1", meshed=True, sa="server"),
            _pod("web-v2", c.ip, "v2", meshed=False, sa="web")] + rules(RULES)


@pytest.fixture(scope="module")
def d2mesh(tmp_path_factory: pytest.TempPathFactory):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    with open_mesh(tmp_path_factory.mktemp("d2mesh"), store=_store) as m:
        yield m


def head(mesh: Mesh, path: str, *headers: str, host: str = HOST) -> tuple[int, dict[str, str], str]:
    args = [a for h in headers for a in ("-H", h)]
    r = mesh.a.run("curl", "-s", "-i", "-m", "10", "-H", f"Host: {host}", *args, f"http://198.18.251.1:8080{path}")
    text = r.stdout.replace("\r\n", "\n")
    top, _, body = text.partition("\n\n")
    lines = top.split("\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    hs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hs[k.strip().lower()] = v.strip()
    return status, hs, body


def test_redirect_derive_port_through_the_control_plane(d2mesh: Mesh) -> None:
    status, hs, _ = head(d2mesh, "/moved/x")
    assert status == 301, (status, hs)
    assert hs["location"] == f"http://web.{NS}.svc.cluster.local:8080/new/x"


def test_sticky_cookie_generated_through_the_control_plane(d2mesh: Mesh) -> None:
    import json

    status, hs, body = head(d2mesh, "/")
    assert status == 200, (status, hs, body)
    cookie = hs["set-cookie"]
    assert cookie.startswith("user=") and "Max-Age=60" in cookie and "Path=/" in cookie, cookie
    value = cookie.split(";")[0]
    apps = set()
    for _ in range(8):
        s, h2, b = head(d2mesh, "/", f"Cookie: {value}")
        assert s == 200 and "set-cookie" not in h2
        apps.add(json.loads(b)["app"])
    assert len(apps) == 1, apps


def test_http2_error_abort_through_the_control_plane(d2mesh: Mesh) -> None:
    import json
    import sys

    r = d2mesh.a.run(sys.executable, str(HERE / "policy2_apps.py"), "h2", "http://198.18.251.1:8080/refuse",
                     "--authority", HOST, timeout=40)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got.get("reset") == 7 and "headers" not in got, got


def _raw(mesh: Mesh, host: str, path: str) -> tuple[list[str], str]:
    """The raw response header lines (names as sent) and the body."""
    r = mesh.a.run("curl", "-s", "-i", "-m", "10", "-H", f"Host: {host}", f"http://198.18.251.1:8080{path}")
    top, _, body = r.stdout.replace("\r\n", "\n").partition("\n\n")
    return top.split("\n"), body


def test_h2_upgrade_policy_through_the_control_plane(d2mesh: Mesh) -> None:
    import json

    lines, body = _raw(d2mesh, UPG, "/up")
    assert lines[0].startswith("HTTP/1.1 200"), lines
    names = [line.partition(":")[0] for line in lines[1:]]
    assert names and all(n == n.lower() for n in names), names  # the response crossed HTTP/2 between the proxies
    got = json.loads(body)
    assert got["app"] == "b" and got["path"] == "/up"
    assert not any(k.lower() == "l5d-orig-proto" for k in got["headers"])
    plain, _ = _raw(d2mesh, HOST, "/?x")  # web has no h2UpgradePolicy: the app's own header names
    assert any(line.partition(":")[0] != line.partition(":")[0].lower() for line in plain[1:]), plain
