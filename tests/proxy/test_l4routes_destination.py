"""Real path with the real control plane: a VirtualService `tcp:` rule read from the store by
`python -m meshlet.destination` sends opaque connections to a Service's VIP to one subset."""
from __future__ import annotations

import json
import os
import sys

import pytest

from proxy_mesh import NS, Mesh, open_mesh
from test_l4routes_real import TCP_CLIENT
from test_route_destination import rules

pytestmark = pytest.mark.root

VIP = "198.18.251.30"

RULES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: banner-route}
spec:
  hosts: [banner]
  tcp:
  - match: [{port: 2525}]
    route: [{destination: {host: banner, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: banner}
spec:
  host: banner
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def _store(a, b, c) -> list:  # noqa: ANN001
    from meshlet.controller.model import (Container, ContainerPort, ObjectMeta, Pod, PodSpec, PodStatus, Service,
                                          ServicePort, ServiceSpec)

    def pod(name: str, ip: str, version: str, *, meshed: bool, sa: str) -> Pod:
        return Pod(
            metadata=ObjectMeta(name=name, namespace=NS, labels={"app": "banner", "version": version},
                                annotations={"meshlet.io/proxy": "injected"} if meshed else {}),
            spec=PodSpec(containers=(Container(name="app", ports=(ContainerPort(container_port=2525),)),),
                         service_account_name=sa),
            status=PodStatus(phase="Running", pod_ip=ip, ready=True),  # type: ignore[arg-type]
        )

    svc = Service(metadata=ObjectMeta(name="banner", namespace=NS),
                  spec=ServiceSpec(selector={"app": "banner"}, cluster_ip=VIP,
                                   ports=(ServicePort(port=2525, name="tcp-banner"),)))
    return [svc, pod("banner-v1", b.ip, "v1", meshed=True, sa="server"),
            pod("banner-v2", c.ip, "v2", meshed=False, sa="banner")] + rules(RULES)


@pytest.fixture(scope="module")
def l4dmesh(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    with open_mesh(tmp_path_factory.mktemp("l4dmesh"), store=_store) as m:
        yield m


def test_virtual_service_tcp_rule_picks_the_subset(l4dmesh: Mesh) -> None:
    r = l4dmesh.a.run(sys.executable, "-c", TCP_CLIENT, f"{VIP}:2525", "8", timeout=180)
    assert r.returncode == 0, r.stderr
    lines = json.loads(r.stdout)
    assert set(lines[0::2]) == {"220 banner from c"}, lines
    assert set(lines[1::2]) == {"echo ping"}
