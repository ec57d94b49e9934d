"""Real path with the real control plane: `python -m meshlet.destination` translates a
VirtualService and a DestinationRule from the store into profiles; the client's proxy
enforces them (b is version v1 and meshed, c is version v2 in plaintext)."""
from __future__ import annotations

import json
import os

import pytest

from proxy_mesh import NS, Mesh, open_mesh, store_apply
from proxy_netns import wait_for

pytestmark = pytest.mark.root

HOST = f"web.{NS}.svc.cluster.local:8080"

RULES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-route}
spec:
  hosts: [web]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: web, subset: v2}}]
  - match: [{uri: {prefix: /teapot}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: web, subset: v1}}]
  - route: [{destination: {host: web, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""

EVERYONE_V2 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-route}
spec:
  hosts: [web]
  http: [{route: [{destination: {host: web, subset: v2}}]}]
"""


def rules(text: str) -> list:
    import yaml

    from meshlet.controller.model import load_text

    docs = [d for d in yaml.safe_load_all(text) if d]
    for d in docs:
        d["metadata"]["namespace"] = NS
    return load_text(yaml.safe_dump_all(docs))


def _pod(name: str, ip: str, version: str, *, meshed: bool, sa: str):  # noqa: ANN202
    from meshlet.controller.model import Container, ContainerPort, ObjectMeta, Pod, PodSpec, PodStatus

    return Pod(
        metadata=ObjectMeta(name=name, namespace=NS, labels={"app": "web", "version": version},
                            annotations={"meshlet.io/proxy": "injected"} if meshed else {}),
        spec=PodSpec(containers=(Container(name="app", ports=(ContainerPort(container_port=8080, name="http"),)),),
                     service_account_name=sa),
        status=PodStatus(phase="Running", pod_ip=ip, ready=True),  # type: ignore[arg-type]
    )


def _store(a, b, c) -> list:  # noqa: ANN001
    from meshlet.controller.model import ObjectMeta, Service, ServicePort, ServiceSpec

    web = Service(metadata=ObjectMeta(name="web", namespace=NS),
                  spec=ServiceSpec(selector={"app": "web"}, ports=(ServicePort(port=8080, name="http"),)))
    return [web, _pod("web-v1", b.ip, "v1", meshed=True, sa="server"),
            _pod("web-v2", c.ip, "v2", meshed=False, sa="web")] + rules(RULES)


@pytest.fixture(scope="module")
def dmesh(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    with open_mesh(tmp_path_factory.mktemp("dmesh"), store=_store) as m:
        yield m


def get(mesh: Mesh, path: str, *headers: str) -> tuple[int, str]:
    args = [a for h in headers for a in ("-H", h)]
    r = mesh.a.run("curl", "-s", "-m", "10", "-o", "/dev/stdout", "-w", "\n%{http_code}", "-H", f"Host: {HOST}",
                   *args, f"http://198.18.251.1:8080{path}")
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def app(mesh: Mesh, *headers: str) -> str:
    status, body = get(mesh, "/", *headers)
    assert status == 200, (status, body)
    return json.loads(body)["app"]


def test_virtual_service_routes_by_header_to_subsets(dmesh: Mesh) -> None:
    assert {app(dmesh, "end-user: jason") for _ in range(5)} == {"c"}
    assert {app(dmesh, "end-user: bob") for _ in range(5)} == {"b"}
    assert get(dmesh, "/teapot")[0] == 418


def test_an_applied_change_reaches_the_proxy(dmesh: Mesh) -> None:
    store_apply(dmesh.state, rules(EVERYONE_V2))  # type: ignore[arg-type]
    wait_for(lambda: app(dmesh, "end-user: bob") == "c", "everyone routed to v2", timeout=30, interval=0.1)
    assert get(dmesh, "/teapot")[0] == 200
