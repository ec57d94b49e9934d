"""Real path of HTTP/2 and gRPC: a grpclib client in pod a (meshed, iptables capture) calls gRPC
and h2c servers through a's proxy, then over mTLS (ALPN h2) through b's proxy, or in plaintext
to the unmeshed pod c, with routes, retries, faults and timeouts from the Destination stand-in."""
from __future__ import annotations

import json
import re
import sys

import pytest
from proxy_mesh import HERE, NS, SERVER_ID, open_mesh
from proxy_netns import wait_for

pytestmark = pytest.mark.root

PLAIN = "198.18.251.1:50051"   # routed to b, no profile
RETRY = "198.18.251.2:50051"   # retry on unavailable
ABORT = "198.18.251.3:50051"   # fault abort with a gRPC status
TIMEOUT = "198.18.251.4:50051"  # route timeout 300 ms
HDR = "198.18.251.5:8081"      # h2c routes by header: jason → c (v2), others → b (v1)
MIRRORED = "198.18.251.6:8081"  # to b, mirrored to SHADOW
SHADOW = "198.18.251.7:8081"    # c


def _endpoints(a, b, c):
    grpc_b = {"labels": {"dst_service": "echo", "dst_namespace": NS},
              "endpoints": [{"ip": b.ip, "port": 50051, "identity": SERVER_ID}]}
    out = {k: grpc_b for k in (PLAIN, RETRY, ABORT, TIMEOUT)}
    out[HDR] = {"labels": {"dst_service": "web2", "dst_namespace": NS}, "endpoints": [
        {"ip": b.ip, "port": 8081, "identity": SERVER_ID, "pod_labels": {"version": "v1"}},
        {"ip": c.ip, "port": 8081, "pod_labels": {"version": "v2"}}]}
    out[MIRRORED] = {"labels": {"dst_service": "web3", "dst_namespace": NS},
                     "endpoints": [{"ip": b.ip, "port": 8081, "identity": SERVER_ID}]}
    out[SHADOW] = {"labels": {"dst_service": "shadow", "dst_namespace": NS},
                   "endpoints": [{"ip": c.ip, "port": 8081}]}
    return out


def _profiles(a, b, c):
    return {
        RETRY: {"routes": [{"retry": {"attempts": 2, "retryOn": ["unavailable"]}, "backends": [{"authority": RETRY}]}]},
        ABORT: {"routes": [{"fault": {"abortGrpcStatus": 7, "abortPercent": 100, "abortHttpStatus": 0},
                            "backends": [{"authority": ABORT}]}]},
        TIMEOUT: {"routes": [{"timeoutMs": 300, "backends": [{"authority": TIMEOUT}]}]},
        MIRRORED: {"routes": [{"mirror": {"authority": SHADOW, "percent": 100},
                               "backends": [{"authority": MIRRORED}]}]},
        HDR: {"subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}],
              "routes": [
                  {"name": "jason", "matches": [{"headers": [{"name": "end-user", "value": {"exact": "jason"}}]}],
                   "backends": [{"authority": HDR, "subset": "v2"}]},
                  {"name": "default", "backends": [{"authority": HDR, "subset": "v1"}]}]},
    }


@pytest.fixture(scope="module")
def h2mesh(tmp_path_factory: pytest.TempPathFactory):
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    tmp = tmp_path_factory.mktemp("h2mesh")
    with open_mesh(tmp, extra=_endpoints, profiles=_profiles) as m:
        for pod in (m.b, m.c):
            log = tmp / f"h2apps-{pod.name}.log"
            m.net.start(pod, [sys.executable, str(HERE / "h2_apps.py"), "serve", pod.name], log)
            wait_for(lambda log=log: b"h2 apps ready" in log.read_bytes(), f"h2 apps in {pod.name}", log=log)
        yield m


def _run(m, *args: str, pod=None) -> dict:
    r = (pod or m.a).run(sys.executable, str(HERE / "h2_apps.py"), *args, timeout=40)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _grpc(m, authority: str, **md: str) -> dict:
    host, port = authority.rsplit(":", 1)
    return _run(m, "grpc", host, port, *(f"{k}={v}" for k, v in md.items()))


def _series(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_grpc_call_over_mtls_through_both_proxies(h2mesh) -> None:
    m = h2mesh
    got = _grpc(m, PLAIN)
    assert got == {"status": 0, "reply": "b:hello"}
    # the server's proxy saw h2 inside mTLS from the client's identity, and the gRPC status
    wait_for(lambda: _series(m.metrics(m.b), "response_total", direction="inbound", tls="true",
                             grpc_status_code="0", classification="success",
                             client_id=f"spiffe://cluster.local/ns/{NS}/sa/client") >= 1,
             "inbound gRPC response counted", timeout=20)
    out = m.metrics(m.a)
    assert _series(out, "response_total", direction="outbound", authority=PLAIN, tls="true",
                   server_id=SERVER_ID, grpc_status_code="0") >= 1
    assert _series(out, "request_total", direction="outbound", authority=PLAIN) >= 1


def test_several_calls_share_one_upstream_connection(h2mesh) -> None:
    m = h2mesh
    for _ in range(3):
        assert _grpc(m, PLAIN)["status"] == 0
    assert _series(m.metrics(m.a), "response_total", authority=PLAIN, grpc_status_code="0") >= 3


def test_h2c_header_route_reaches_the_chosen_backend(h2mesh) -> None:
    m = h2mesh
    jason = _run(m, "get", f"http://{HDR}/page", "end-user=jason")
    assert jason["headers"][":status"] == "200" and jason["body"] == "c /page end-user=jason"
    other = _run(m, "get", f"http://{HDR}/page", "end-user=mary")
    assert other["headers"][":status"] == "200" and other["body"] == "b /page end-user=mary"


def test_grpc_retry_on_unavailable_succeeds(h2mesh) -> None:
    m = h2mesh
    got = _grpc(m, RETRY, **{"x-fail-first": "retry-1"})
    assert got == {"status": 0, "reply": "b:hello"}
    out = m.metrics(m.a)
    assert re.search(rf'retry_total{{authority="{re.escape(RETRY)}"[^}}]*}} 1\.0', out), out[-3000:]
    # without the retry condition the same failure reaches the client
    assert _grpc(m, PLAIN, **{"x-fail-first": "plain-1"})["status"] == 14


def test_grpc_fault_abort_returns_its_status(h2mesh) -> None:
    m = h2mesh
    got = _grpc(m, ABORT)
    assert got["status"] == 7 and "fault" in got["message"]
    assert _series(m.metrics(m.a), "response_total", authority=ABORT, grpc_status_code="7",
                   classification="failure") >= 1


def test_grpc_route_timeout_is_deadline_exceeded(h2mesh) -> None:
    m = h2mesh
    got = _grpc(m, TIMEOUT, **{"x-sleep": "3"})
    assert got["status"] == 4, got
    assert _grpc(m, TIMEOUT)["status"] == 0


def test_http1_still_works_next_to_h2(h2mesh) -> None:
    m = h2mesh
    r = m.a.run("curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
                f"http://{m.b.ip}:8080/", timeout=20)
    assert r.stdout == "200", r


def test_large_messages_both_ways_respect_flow_control(h2mesh) -> None:
    m = h2mesh
    got = _grpc(m, PLAIN, **{"x-send": str(3 * 1024 * 1024), "x-size": str(5 * 1024 * 1024)})
    assert got == {"status": 0, "size": 5 * 1024 * 1024, "checksum_ok": True}


def test_plaintext_h2c_from_an_unmeshed_pod_reaches_the_app(h2mesh) -> None:
    m = h2mesh
    got = _run(m, "grpc", m.b.ip, "50051", pod=m.c)
    assert got == {"status": 0, "reply": "b:hello"}
    wait_for(lambda: _series(m.metrics(m.b), "response_total", direction="inbound", tls="false",
                             grpc_status_code="0") >= 1, "plaintext inbound gRPC counted", timeout=20)


def test_h2_mirror_copies_the_request_to_the_shadow(h2mesh) -> None:
    m = h2mesh
    got = _run(m, "get", f"http://{MIRRORED}/mirrored")
    assert got["body"] == "b /mirrored end-user="
    host, port = MIRRORED.rsplit(":", 1)
    log = m.tmp / "h2apps-c.log"
    wait_for(lambda: f"request {host}-shadow:{port} /mirrored" in log.read_text(), "mirrored copy at c",
             timeout=20, log=log)
