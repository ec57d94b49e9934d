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
MAXREQ = "198.18.252.2:8082"     # b's h2c echo, http2MaxRequests 1
PERCONN = "198.18.252.3:8082"    # b's h2c echo, maxRequestsPerConnection 1
MAXREQ1 = "198.18.252.4:8080"    # b's HTTP/1 app, http2MaxRequests 1
OUTLIER = "198.18.252.5:8080"    # b and c round robin, outlier detection (c fails /fail-on/c)
STICKY = "198.18.252.6:8080"     # b and c, consistent hash on cookie "user" with a ttl
H2ABORT = "198.18.252.7:8082"    # b's h2c echo, fault abort http2Error REFUSED_STREAM
REDIRECT = "198.18.252.8:8080"   # redirect with derivePort FROM_REQUEST_PORT
UPGRADE = "198.18.252.9:8080"    # b's HTTP/1 app, h2UpgradePolicy UPGRADE
NOUPGRADE = "198.18.252.10:8080"  # the same without it


def _endpoints(a, b, c):
    def svc(name: str, *eps: dict) -> dict:
        return {"labels": {"dst_service": name, "dst_namespace": NS}, "endpoints": list(eps)}

    return {
        DEADLINE: svc("echo2", {"ip": b.ip, "port": 8082, "identity": SERVER_ID}),
        MAXREQ: svc("maxreq", {"ip": b.ip, "port": 8082, "identity": SERVER_ID}),
        PERCONN: svc("perconn", {"ip": b.ip, "port": 8082, "identity": SERVER_ID}),
        MAXREQ1: svc("maxreq1", {"ip": b.ip, "port": 8080, "identity": SERVER_ID}),
        OUTLIER: svc("outlier2", {"ip": b.ip, "port": 8080, "identity": SERVER_ID}, {"ip": c.ip, "port": 8080}),
        STICKY: svc("sticky2", {"ip": b.ip, "port": 8080, "identity": SERVER_ID}, {"ip": c.ip, "port": 8080}),
        H2ABORT: svc("h2abort", {"ip": b.ip, "port": 8082, "identity": SERVER_ID}),
        REDIRECT: svc("redirect2", {"ip": b.ip, "port": 8080, "identity": SERVER_ID}),
        UPGRADE: svc("upgrade", {"ip": b.ip, "port": 8080, "identity": SERVER_ID}),
        NOUPGRADE: svc("noupgrade", {"ip": b.ip, "port": 8080, "identity": SERVER_ID}),
    }


def _pool(**kw: int) -> dict:
    return {"trafficPolicy": {"connectionPool": kw}}


def _profiles(a, b, c):
    return {
        MAXREQ: _pool(http2MaxRequests=1),
        PERCONN: _pool(maxRequestsPerConnection=1),
        MAXREQ1: _pool(http2MaxRequests=1),
        OUTLIER: {"trafficPolicy": {
            "loadBalancer": {"policy": "LOAD_BALANCER_POLICY_ROUND_ROBIN"},
            "outlierDetection": {"consecutive5xxErrors": 1, "intervalMs": 1000, "baseEjectionTimeMs": 3000,
                                 "maxEjectionPercent": 100}}},
        STICKY: {"trafficPolicy": {"loadBalancer": {
            "policy": "LOAD_BALANCER_POLICY_CONSISTENT_HASH",
            "consistentHash": {"httpCookieName": "user", "cookieTtlMs": 3600_000, "cookiePath": "/"}}}},
        H2ABORT: {"routes": [{"fault": {"abortHttp2Error": "REFUSED_STREAM", "abortPercent": 100,
                                        "abortGrpcStatus": -1}, "backends": [{"authority": H2ABORT}]}]},
        UPGRADE: _pool(h2Upgrade=True),
        REDIRECT: {"routes": [{"redirect": {"uri": "/moved", "scheme": "https",
                                            "derivePort": "DERIVE_PORT_FROM_REQUEST_PORT"}}]},
    }


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


def _series(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


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


def test_http2_max_requests_overflows_h2_streams_with_503(p2mesh) -> None:
    m = p2mesh
    assert _h2(m, f"http://{MAXREQ}/warm")["headers"][":status"] == "200"
    r = m.a.run(sys.executable, str(HERE / "policy2_apps.py"), "multi", f"http://{MAXREQ}/slow", "3", "x-delay=2",
                timeout=40)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["statuses"].count("200") >= 1 and got["statuses"].count("503") >= 1, got
    assert all(e.startswith("overflow") for s, e in zip(got["statuses"], got["errors"]) if s == "503"), got
    assert _series(m.metrics(m.a), "cluster_overflow_total", authority=MAXREQ, kind="requests") >= 1


def test_http2_max_requests_limits_http1_requests_too(p2mesh) -> None:
    m = p2mesh
    code = f"""
import concurrent.futures, urllib.request, urllib.error
def get(_):
    try:
        return urllib.request.urlopen("http://{MAXREQ1}/sleep/1500", timeout=20).status
    except urllib.error.HTTPError as e:
        return e.code
with concurrent.futures.ThreadPoolExecutor(3) as ex:
    print(sorted(ex.map(get, range(3))))
"""
    r = m.a.python(code, timeout=40)
    assert r.returncode == 0, r.stderr
    statuses = json.loads(r.stdout.strip().splitlines()[-1])
    assert 200 in statuses and 503 in statuses, statuses
    assert _series(m.metrics(m.a), "cluster_overflow_total", authority=MAXREQ1, kind="requests") >= 1


def test_max_requests_per_connection_opens_a_connection_per_h2_stream(p2mesh) -> None:
    m = p2mesh

    def opened() -> float:  # h2 connections from a's proxy to b (the pool of b:8082 is shared by the targets)
        return _series(m.metrics(m.a), "tcp_open_total", direction="outbound", server_id=SERVER_ID, peer="dst")

    before = opened()
    for i in range(3):
        assert _h2(m, f"http://{PERCONN}/n{i}")["headers"][":status"] == "200"
    assert opened() - before == 3
    # without the setting the streams share one connection
    before = opened()
    for i in range(3):
        assert _h2(m, f"http://{DEADLINE}/n{i}")["headers"][":status"] == "200"
    assert opened() - before <= 1


def test_ejected_endpoint_returns_and_a_second_ejection_lasts_twice_as_long(p2mesh) -> None:
    m = p2mesh
    # c always fails: ejected at its first failure for 3 s, back at the next 1 s sweep, fails at
    # once (within that interval: multiplier 2), ejected for 6 s, back again
    r = m.a.run(sys.executable, str(HERE / "policy2_apps.py"), "watch", f"http://{OUTLIER}/fail-on/c", "3", "60",
                timeout=90)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    t = got["failures"]
    assert len(t) == 3, got  # it came back twice
    first, second = t[1] - t[0], t[2] - t[1]
    assert first >= 3.0 - 0.5, got  # not before baseEjectionTime
    assert second >= 2 * 3.0 - 0.5, got  # the second ejection: twice as long (a single one ends by 4 s)


def _http1(m, url: str, n: int = 1, *headers: str) -> list[dict]:
    r = m.a.run(sys.executable, str(HERE / "policy2_apps.py"), "http1", url, str(n), *headers, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_consistent_hash_cookie_is_generated_and_sticks(p2mesh) -> None:
    m = p2mesh
    first = _http1(m, f"http://{STICKY}/who")[0]
    assert first["status"] == 200, first
    cookie = first["headers"]["set-cookie"]
    assert cookie.startswith("user=") and "Max-Age=3600" in cookie and "Path=/" in cookie
    value = cookie.split(";")[0]
    again = _http1(m, f"http://{STICKY}/who", 12, f"cookie={value}")
    apps = {json.loads(r["body"])["app"] for r in again}
    assert len(apps) == 1, apps  # every request with the cookie on one endpoint
    assert all("set-cookie" not in r["headers"] for r in again)


def test_http2_error_fault_resets_the_stream(p2mesh) -> None:
    m = p2mesh
    got = _h2(m, f"http://{H2ABORT}/x")
    assert got.get("reset") == 7 and "headers" not in got, got  # REFUSED_STREAM, no response


def test_redirect_derives_the_port_from_the_request(p2mesh) -> None:
    m = p2mesh
    got = _http1(m, f"http://{REDIRECT}/old")[0]
    assert got["status"] == 301 and got["headers"]["location"] == "https://198.18.252.8:8080/moved", got


def test_h2_upgrade_carries_http1_requests_as_h2_between_the_proxies(p2mesh) -> None:
    m = p2mesh
    got = _http1(m, f"http://{UPGRADE}/upgraded", 2)
    for r in got:
        assert r["status"] == 200, r
        body = json.loads(r["body"])
        assert body["app"] == "b" and body["path"] == "/upgraded"
        assert not any(k.lower() == "l5d-orig-proto" for k in body["headers"])  # the mark stays between proxies
        assert all(n == n.lower() for n in r["names"]), r["names"]  # the response crossed HTTP/2 (names lowered)
    posted = _http1(m, f"http://{UPGRADE}/echo", 1, "body=" + "x" * 100_000)[0]
    assert posted["status"] == 200 and posted["body"] == "x" * 100_000
    plain = _http1(m, f"http://{NOUPGRADE}/plain")[0]  # DEFAULT: HTTP/1.1 bytes as the app sent them
    assert plain["status"] == 200 and any(n != n.lower() for n in plain["names"]), plain["names"]
