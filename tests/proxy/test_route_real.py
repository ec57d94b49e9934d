"""Real path of route configuration: the client's proxy (pod a, iptables capture) gets
profiles from the Destination stand-in and enforces them on real requests to real apps
(b: meshed, mTLS, version v1; c: plaintext, version v2)."""
from __future__ import annotations

import json
import os


import pytest

from proxy_mesh import NS, SERVER_ID, Mesh, open_mesh
from proxy_netns import http_get, wait_for, write_json

pytestmark = pytest.mark.root

ANY = "198.18.251.1:8080"  # any address: the Host header picks the target


def svc(name: str) -> str:
    return f"{name}.{NS}.svc.cluster.local:8080"


def _endpoints(a, b, c):  # noqa: ANN001, ANN202
    v1 = {"ip": b.ip, "port": 8080, "identity": SERVER_ID, "pod_labels": {"app": "web", "version": "v1"}}
    v2 = {"ip": c.ip, "port": 8080, "pod_labels": {"app": "web", "version": "v2"}}
    both = ["split", "hdr", "outlier", "noroute", "live", "rw", "sticky"]
    only_b = ["abort", "delay", "timeout", "retry", "budget", "mirror", "pool", "notls", "pertry"]
    out = {svc(n): {"labels": {"dst_service": n, "dst_namespace": NS}, "endpoints": [v1, v2]} for n in both}
    out.update({svc(n): {"labels": {"dst_service": n, "dst_namespace": NS}, "endpoints": [v1]} for n in only_b})
    out[svc("blocked")] = {"blocked": True}
    return out


SUBSETS = [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]


def _profiles(a, b, c):  # noqa: ANN001, ANN202
    def to(name: str, **kw: object) -> list[dict]:
        return [{"authority": svc(name), **kw}]

    return {
        svc("split"): {"routes": [{"backends": [
            {"authority": svc("split"), "weight": 50, "subsetLabels": {"version": "v1"}},
            {"authority": svc("split"), "weight": 50, "subsetLabels": {"version": "v2"}}]}]},
        svc("hdr"): {"subsets": SUBSETS, "routes": [
            {"name": "jason", "matches": [{"headers": [{"name": "end-user", "value": {"exact": "jason"}}]}],
             "backends": to("hdr", subset="v2")},
            {"name": "default", "backends": to("hdr", subset="v1")}]},
        svc("abort"): {"routes": [{"fault": {"abortHttpStatus": 418, "abortPercent": 100}, "backends": to("abort")}]},
        svc("delay"): {"routes": [{"fault": {"delayMs": 300, "delayPercent": 100}, "backends": to("delay")}]},
        svc("timeout"): {"routes": [{"timeoutMs": 300, "backends": to("timeout")}]},
        svc("retry"): {"routes": [{"retry": {"attempts": 2, "retryOn": ["5xx"]}, "backends": to("retry")}]},
        svc("budget"): {"retryBudget": {"retryRatio": 0.1, "minRetriesPerSecond": 0, "ttlMs": 60000},
                        "routes": [{"retry": {"attempts": 3, "retryOn": ["5xx"]}, "backends": to("budget")}]},
        svc("mirror"): {"routes": [{"mirror": {"authority": f"plain.{NS}.svc.cluster.local:8080", "percent": 100},
                                    "backends": to("mirror")}]},
        svc("pool"): {"trafficPolicy": {"connectionPool": {"maxConnections": 1, "http1MaxPendingRequests": 1}}},
        svc("outlier"): {"trafficPolicy": {
            "loadBalancer": {"policy": "LOAD_BALANCER_POLICY_ROUND_ROBIN"},
            "outlierDetection": {"consecutive5xxErrors": 2, "intervalMs": 100, "baseEjectionTimeMs": 3000,
                                 "maxEjectionPercent": 100}}},
        svc("noroute"): {"routes": [{"matches": [{"path": {"exact": "/only"}}], "backends": to("noroute")}]},
        svc("sticky"): {"trafficPolicy": {"loadBalancer": {
            "policy": "LOAD_BALANCER_POLICY_CONSISTENT_HASH", "consistentHash": {"httpHeaderName": "x-user"}}}},
        svc("pertry"): {"routes": [{"retry": {"attempts": 2, "perTryTimeoutMs": 200, "retryOn": ["5xx"]},
                                    "backends": to("pertry")}]},
        svc("notls"): {"trafficPolicy": {"tls": {"mode": "TLS_MODE_DISABLE"}}},
        svc("live"): {"routes": [{"directResponse": {"status": 200, "body": "b25l"}}]},  # "one"
        svc("rw"): {"routes": [{"matches": [{"path": {"prefix": "/old"}}], "rewrite": {"uri": "/new"},
                                "requestHeaders": {"set": {"x-route": "yes"}},
                                "responseHeaders": {"set": {"x-resp": "yes"}}, "backends": to("rw", subset="v2")}],
                   "subsets": SUBSETS},
    }


def tls_files(d) -> dict[str, str]:  # noqa: ANN001
    """A CA and a server certificate for "secure.example" signed by it (PEM files in `d`)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject: str, key, issuer: str, issuer_key, *, ca: bool):  # noqa: ANN001, ANN202
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("test ca", ca_key, "test ca", ca_key, ca=True)
    leaf = cert("secure.example", key, "test ca", ca_key, ca=False)
    out = {"ca": str(d / "ca.pem"), "cert": str(d / "server.pem"), "key": str(d / "server.key")}
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return out


SECURE = f"secure.{NS}.svc.cluster.local:8443"


def _fast_endpoints(b, c):  # noqa: ANN001, ANN202
    """HTTP/1 fast path: `fastdef` (the server), `fastdead` (a closed port: connects are refused)."""
    return {svc("fastdef"): {"labels": {"dst_service": "fastdef", "dst_namespace": NS},
                             "endpoints": [{"ip": b.ip, "port": 8080, "identity": SERVER_ID}]},
            svc("fastdead"): {"labels": {"dst_service": "fastdead", "dst_namespace": NS},
                              "endpoints": [{"ip": c.ip, "port": 9}]}}


def _fast_profiles():  # noqa: ANN202
    """What destination sends for a Service without VirtualService: the default route with
    Istio's default retry policy (connect failures are retried)."""
    from meshlet.api import destination_pb as pb
    from meshlet.destination.profiles import default_route, retry_budget

    return {name: pb.DestinationProfile(routes=[default_route(name)], retry_budget=retry_budget()).to_dict()
            for name in (svc("fastdef"), svc("fastdead"))}


@pytest.fixture(scope="module")
def rmesh(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables)")
    tmp = tmp_path_factory.mktemp("rmesh")
    files = tls_files(tmp)

    def endpoints(a, b, c):  # noqa: ANN001, ANN202
        return {**_endpoints(a, b, c), **_fast_endpoints(b, c), SECURE: {"labels": {"dst_service": "secure"},
                                                 "endpoints": [{"ip": c.ip, "port": 8443}]}}

    def profiles(a, b, c):  # noqa: ANN001, ANN202
        return {**_profiles(a, b, c), **_fast_profiles(), SECURE: {"trafficPolicy": {"tls": {
            "mode": "TLS_MODE_SIMPLE", "caCertificates": files["ca"], "sni": "secure.example"}}}}

    with open_mesh(tmp, extra=endpoints, profiles=profiles,
                   app_env={"APPS_TLS_CERT": files["cert"], "APPS_TLS_KEY": files["key"]}) as m:
        yield m


CLIENT = """
import concurrent.futures, http.client, json, sys, time
reqs = json.loads(sys.argv[1]); workers = int(sys.argv[2])
def one(r):
    conn = http.client.HTTPConnection("198.18.251.1", 8080, timeout=30)
    t0 = time.monotonic()
    conn.request(r.get("method", "GET"), r["path"], headers={"Host": r["host"], **r.get("headers", {})})
    resp = conn.getresponse()
    body = resp.read().decode(errors="replace")
    conn.close()
    return {"status": resp.status, "headers": {k.lower(): v for k, v in resp.getheaders()}, "body": body,
            "elapsed": time.monotonic() - t0}
with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    print(json.dumps(list(pool.map(one, reqs))))
"""


def requests(mesh: Mesh, host: str, paths: list[str], *, workers: int = 1, headers: dict | None = None) -> list[dict]:
    reqs = [{"host": host, "path": p, "headers": headers or {}} for p in paths]
    r = mesh.a.run(os.sys.executable, "-c", CLIENT, json.dumps(reqs), str(workers), timeout=180)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def app_of(resp: dict) -> str:
    return json.loads(resp["body"])["app"]


def metric(text: str, name: str, **labels: str) -> float:
    import re

    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            body, _, value = line.rpartition(" ")
            got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', body))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(value)
    return total


def test_weighted_split_within_five_percent(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("split"), ["/"] * 500, workers=8)
    apps = [app_of(r) for r in got]
    assert all(r["status"] == 200 for r in got)
    assert 225 <= apps.count("b") <= 275, apps.count("b")


def test_header_match_routes_to_a_subset(rmesh: Mesh) -> None:
    jason = requests(rmesh, svc("hdr"), ["/"] * 10, headers={"end-user": "jason"})
    others = requests(rmesh, svc("hdr"), ["/"] * 10, headers={"end-user": "bob"})
    assert {app_of(r) for r in jason} == {"c"}
    assert {app_of(r) for r in others} == {"b"}


def test_abort_returns_the_status_at_once(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("abort"), ["/x"] * 3)
    assert [r["status"] for r in got] == [418] * 3
    assert got[0]["headers"]["meshlet-proxy-error"] == "fault injected"


def test_delay_fault_then_the_request_goes_on(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("delay"), ["/d"])[0]
    assert got["status"] == 200 and app_of(got) == "b"
    assert got["elapsed"] >= 0.3  # the injected delay is the feature (a lower bound only)


def test_route_timeout_gives_504(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("timeout"), ["/sleep/5000"])[0]
    assert got["status"] == 504 and got["headers"]["meshlet-proxy-error"] == "timeout"
    assert requests(rmesh, svc("timeout"), ["/sleep/1"])[0]["status"] == 200


def test_retries_turn_a_flaky_upstream_into_successes(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("retry"), ["/flaky/k1"] * 10)
    assert [r["status"] for r in got] == [200] * 10
    assert metric(rmesh.metrics(rmesh.a), "retry_total", authority=svc("retry")) >= 10


def test_retry_budget_caps_retries(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("budget"), ["/status/503"] * 30)
    assert all(r["status"] == 503 for r in got)
    text = rmesh.metrics(rmesh.a)
    made = metric(text, "retry_total", authority=svc("budget"))
    assert made <= 0.1 * 30 + 1  # without the budget: 3 per request
    assert metric(text, "retry_skipped_total", authority=svc("budget"), reason="budget") >= 20


def test_mirror_gets_copies_the_client_sees_the_primary(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("mirror"), [f"/mirrored/{i}" for i in range(5)])
    assert {app_of(r) for r in got} == {"b"}

    def shadow_seen() -> bool:
        status, body = http_get(f"http://{rmesh.c.ip}:8080/_seen")
        hosts = [h for h, p in json.loads(body) if p.startswith("/mirrored/")]
        return len(hosts) == 5 and all(h == f"mirror.{NS}.svc.cluster.local-shadow:8080" for h in hosts)

    wait_for(shadow_seen, "5 shadow copies at c", timeout=20)


def test_pool_limit_one_with_three_clients_gives_some_503(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("pool"), ["/sleep/300"] * 9, workers=3)
    statuses = [r["status"] for r in got]
    assert 503 in statuses and 200 in statuses, statuses
    assert all(r["headers"].get("meshlet-proxy-error") == "overflow" for r in got if r["status"] == 503)


def test_failing_endpoint_is_ejected_and_returns(rmesh: Mesh) -> None:
    # round robin over b and c; c answers 500 for /fail-on/c: after 2 in a row it is ejected
    got = [r["status"] for r in requests(rmesh, svc("outlier"), ["/fail-on/c"] * 14)]
    assert got[:4].count(500) == 2 and got[4:] == [200] * 10, got  # ejected for 3 s
    # after the base ejection time c is tried again
    wait_for(lambda: any(r["status"] == 500 for r in requests(rmesh, svc("outlier"), ["/fail-on/c"] * 2)),
             "c back after its ejection", timeout=20, interval=0.2)


def test_blocked_target_is_refused(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("blocked"), ["/"])[0]
    assert got["status"] == 502
    assert got["headers"]["meshlet-proxy-error"] == "blocked by outbound traffic policy"


def test_no_matching_route_is_404(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("noroute"), ["/only", "/other"])
    assert got[0]["status"] == 200
    assert got[1]["status"] == 404 and got[1]["headers"]["meshlet-proxy-error"] == "no route"


def test_rewrite_and_header_operations(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("rw"), ["/old/x?q=1"])[0]
    body = json.loads(got["body"])
    assert body["app"] == "c" and body["path"] == "/new/x?q=1"
    assert body["headers"].get("x-route") == "yes" and got["headers"].get("x-resp") == "yes"


def test_profile_change_applies_to_new_requests(rmesh: Mesh) -> None:
    assert requests(rmesh, svc("live"), ["/"])[0]["body"] == "one"
    profiles = json.loads((rmesh.tmp / "profiles.json").read_text())
    profiles[svc("live")] = {"routes": [{"directResponse": {"status": 200, "body": "dHdv"}}]}  # "two"
    write_json(rmesh.tmp / "profiles.json", profiles)
    wait_for(lambda: requests(rmesh, svc("live"), ["/"])[0]["body"] == "two", "the new profile", timeout=20,
             interval=0.1)
    status, body = http_get(f"http://{rmesh.a.ip}:15000/config_dump")
    dump = json.loads(body)["profiles"][svc("live")]
    assert dump["routes"][0]["direct"]["body"] == "two" and dump["stream_connected"]



def test_tls_origination_to_a_server_outside_the_mesh(rmesh: Mesh) -> None:
    got = requests(rmesh, SECURE, ["/tls"])[0]
    assert got["status"] == 200 and app_of(got) == "c", got
    assert metric(rmesh.metrics(rmesh.a), "request_total", authority=SECURE, tls="true") >= 1


def test_tls_disable_speaks_plaintext_to_a_meshed_endpoint(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("notls"), ["/plain"])[0]
    assert got["status"] == 200 and app_of(got) == "b"
    assert metric(rmesh.metrics(rmesh.a), "request_total", authority=svc("notls"), tls="false") >= 1
    assert metric(rmesh.metrics(rmesh.a), "request_total", authority=svc("notls"), tls="true") == 0


def test_per_try_timeout_retries_then_gives_504(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("pertry"), ["/sleep/3000"])[0]
    assert got["status"] == 504 and got["headers"]["meshlet-proxy-error"] == "timeout"
    assert metric(rmesh.metrics(rmesh.a), "retry_total", authority=svc("pertry")) == 2
    assert requests(rmesh, svc("pertry"), ["/sleep/1"])[0]["status"] == 200


def test_consistent_hash_keeps_a_user_on_one_endpoint(rmesh: Mesh) -> None:
    users = [f"user-{i}" for i in range(20)]
    reqs = [{"host": svc("sticky"), "path": "/", "headers": {"x-user": u}} for u in users for _ in range(4)]
    r = rmesh.a.run(os.sys.executable, "-c", CLIENT, json.dumps(reqs), "4", timeout=180)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    by_user: dict[str, set[str]] = {}
    for req, resp in zip(reqs, got, strict=True):
        by_user.setdefault(req["headers"]["x-user"], set()).add(app_of(resp))
    assert all(len(apps) == 1 for apps in by_user.values()), by_user
    assert {a for apps in by_user.values() for a in apps} == {"b", "c"}  # 20 users: both get some


def test_default_route_serves_and_retries_refused_connects(rmesh: Mesh) -> None:
    got = requests(rmesh, svc("fastdef"), ["/f"] * 5)
    assert [r["status"] for r in got] == [200] * 5 and {app_of(r) for r in got} == {"b"}
    dead = requests(rmesh, svc("fastdead"), ["/f"])[0]
    assert dead["status"] == 502 and "refused" in dead["body"], dead
    assert metric(rmesh.metrics(rmesh.a), "retry_total", authority=svc("fastdead")) == 2  # Istio's 2 attempts


def test_a_retried_503_keeps_the_upstream_connection(rmesh: Mesh) -> None:
    def opened() -> float:  # a's mTLS connections to b's proxy
        return metric(rmesh.metrics(rmesh.a), "tcp_open_total", direction="outbound", peer="dst", server_id=SERVER_ID)

    requests(rmesh, svc("retry"), ["/status/200"])  # a pooled connection to b
    before = opened()
    got = requests(rmesh, svc("retry"), ["/flaky/reuse"] * 10)  # each request: a 503, retried, then 200
    assert [r["status"] for r in got] == [200] * 10
    assert opened() - before <= 1  # not one new connection (and mTLS handshake) per retried 503
