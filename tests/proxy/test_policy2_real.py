"""Real path of the policy2 additions: pod a (meshed, capture) → a's proxy → mTLS → b's proxy → app
(or the unmeshed pod c), with endpoints and profiles from the Destination stand-in."""
from __future__ import annotations

import json
import sys

import pytest
from proxy_mesh import HERE, NS, SERVER_ID, open_mesh
from proxy_netns import wait_for

pytestmark = pytest.mark.root

DEADLINE = "198.18.252.1:8082"   # b's h2c echo, no profile


def _endpoints(a, b, c):
    def svc(name: str, *eps: dict) -> dict:
        return {"labels": {"dst_service": name, "dst_namespace": NS}, "endpoints": list(eps)}

    return {
        DEADLINE: svc("echo2", {"ip": b.ip, "port": 8082, "identity": SERVER_ID}),
    }


def _profiles(a, b, c):
    return {}


@pytest.fixture(scope="module")
def p2mesh(tmp_path_factory: pytest.TempPathFactory):
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    tmp = tmp_path_factory.mktemp("p2mesh")
    with open_mesh(tmp, extra=_endpoints, profiles=_profiles) as m:
        for pod in (m.b, m.c):
            log = tmp / f"p2apps-{pod.name}.log"
            m.net.start(pod, [sys.executable, str(HERE / "policy2_apps.py"), "serve", pod.name], log)
            wait_for(lambda log=log: b"policy2 apps ready" in log.read_bytes(), f"policy2 apps in {pod.name}",
                     log=log)
        yield m


def _h2(m, url: str, *args: str, pod=None) -> dict:
    r = (pod or m.a).run(sys.executable, str(HERE / "policy2_apps.py"), "h2", url, *args, timeout=40)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_grpc_timeout_is_enforced_by_the_proxy(p2mesh) -> None:
    m = p2mesh
    assert _h2(m, f"http://{DEADLINE}/warm")["headers"][":status"] == "200"  # endpoints known, connection open
    got = _h2(m, f"http://{DEADLINE}/stall", "content-type=application/grpc", "te=trailers", "grpc-timeout=1S",
              "x-stall=1", "--grpc-empty")
    h = got["headers"]
    assert h[":status"] == "200" and h["grpc-status"] == "4", got
    assert "timeout" in h["meshlet-proxy-error"]
    log = m.tmp / "p2apps-b.log"
    wait_for(lambda: "reset /stall" in log.read_text(), "the app's stream cancelled", timeout=20, log=log)


def test_request_trailers_pass_through_both_proxies(p2mesh) -> None:
    m = p2mesh
    got = _h2(m, f"http://{DEADLINE}/t", "--body", "hi", "--trailer", "x-sum=42")
    assert got["headers"][":status"] == "200", got
    assert got["body"] == "b /t trailers=x-sum=42"
