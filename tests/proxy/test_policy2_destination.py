"""Real path with the real control plane for the policy2 fields: `python -m meshlet.destination`
translates a VirtualService redirect with `derivePort` and a DestinationRule consistent hash on
an `httpCookie` with a ttl; the client's proxy enforces them (b is v1 and meshed, c v2)."""
from __future__ import annotations

import os

import pytest
from proxy_mesh import NS, Mesh, open_mesh
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
"""


def _store(a, b, c) -> list:
    from meshlet.controller.model import ObjectMeta, Service, ServicePort, ServiceSpec

    web = Service(metadata=ObjectMeta(name="web", namespace=NS),
                  spec=ServiceSpec(selector={"app": "web"}, ports=(ServicePort(port=8080, name="http"),)))
    return [web, _pod("web-v1", b.ip, "v1", meshed=True, sa="server"),
            _pod("web-v2", c.ip, "v2", meshed=False, sa="web")] + rules(RULES)


@pytest.fixture(scope="module")
def d2mesh(tmp_path_factory: pytest.TempPathFactory):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    with open_mesh(tmp_path_factory.mktemp("d2mesh"), store=_store) as m:
        yield m


def head(mesh: Mesh, path: str, *headers: str) -> tuple[int, dict[str, str], str]:
    args = [a for h in headers for a in ("-H", h)]
    r = mesh.a.run("curl", "-s", "-i", "-m", "10", "-H", f"Host: {HOST}", *args, f"http://198.18.251.1:8080{path}")
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
