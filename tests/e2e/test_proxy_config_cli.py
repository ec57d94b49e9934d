"""`meshlet proxy-config`: renderers over canned /config_dump JSON, and the CLI against a store and a fake admin port."""
from __future__ import annotations

import asyncio
import datetime
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from meshlet.controller.cli._proxy_tables import (
    NO_PROFILE,
    cluster_rows,
    describe_match,
    endpoint_rows,
    route_rows,
    secret_rows,
)
from meshlet.controller.cli.main import cli
from meshlet.controller.cli.proxy_config import raw_section, render
from meshlet.controller.model import PodStatus
from meshlet.controller.store import SqliteStore

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
REVIEWS = "reviews.bookinfo.svc.cluster.local:9080"


def make_cert(uri: str, serial: int = 0xABC123) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshlet issuer")])
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(issuer).public_key(key.public_key())
            .serial_number(serial).not_valid_before(NOW - datetime.timedelta(minutes=1))
            .not_valid_after(NOW + datetime.timedelta(hours=24))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


IDENTITY = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage"

# Profiles in the proto JSON spelling (camelCase, defaults omitted), as betterproto2's to_dict() writes them.
DUMP: dict[str, Any] = {
    "identity": {"uri": IDENTITY, "not_after": 0, "cert_pem": make_cert(IDENTITY),
                 "trust_anchor_fingerprint": "sha256:ab:cd", "last_error": ""},
    "destinations": {
        "details:9080": {"kind": "endpoints", "labels": {}, "stream_connected": True, "endpoints": [
            {"addr": "198.18.0.5:9080", "weight": 1, "identity": "spiffe://cluster.local/ns/bookinfo/sa/d",
             "labels": {"version": "v1"}, "ewma_ms": 1.0, "pending": 0}]},
        "reviews:9080": {"kind": "endpoints", "labels": {}, "stream_connected": True, "endpoints": [
            {"addr": "198.18.0.9:9080", "weight": 1, "identity": "", "labels": {}, "ewma_ms": 0, "pending": 0},
            {"addr": "198.18.0.8:9080", "weight": 1, "identity": "spiffe://x", "labels": {}, "ejected": True}]},
        "example.com:80": {"kind": "passthrough", "endpoints": []},
    },
    "profiles": {
        "reviews:9080": {
            "fullyQualifiedName": "reviews.bookinfo.svc.cluster.local",
            "routes": [
                {"name": "reviews-route.0", "matches": [
                    {"headers": [{"name": "end-user", "value": {"exact": "jason"}}]},
                    {"path": {"prefix": "/api"}, "method": {"exact": "GET"},
                     "headers": [{"name": "x-debug", "invert": True}]}],
                 "backends": [{"authority": REVIEWS, "weight": 100, "subset": "v2"}],
                 "timeoutMs": 5000, "retry": {"attempts": 3, "perTryTimeoutMs": 2000, "retryOn": ["5xx", "reset"]},
                 "fault": {"delayMs": 7000, "delayPercent": 100}},
                {"name": "reviews-route.1", "backends": [
                    {"authority": REVIEWS, "weight": 80, "subset": "v1"},
                    {"authority": REVIEWS, "weight": 20, "subset": "v3"}],
                 "mirror": {"authority": "httpbin.httpbin.svc.cluster.local:8000", "subset": "v2", "percent": 50}},
            ],
            "trafficPolicy": {"loadBalancer": {"policy": "LOAD_BALANCER_POLICY_ROUND_ROBIN"},
                              "connectionPool": {"maxConnections": 1, "http1MaxPendingRequests": 1},
                              "outlierDetection": {"consecutive5xxErrors": 1, "baseEjectionTimeMs": 30000,
                                                   "maxEjectionPercent": 100},
                              "tls": {}},
            "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v3", "labels": {"version": "v3"}}],
        },
    },
}


def by_target(rows: list[list[str]]) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for row in rows[1:]:
        out.setdefault(row[0], []).append(row)
    return out


def test_endpoints_table() -> None:
    rows = endpoint_rows(DUMP)
    assert rows[0] == ["TARGET", "ENDPOINT", "IDENTITY", "LABELS", "HEALTH"]
    t = by_target(rows)
    assert t["details:9080"] == [["details:9080", "198.18.0.5:9080", "spiffe://cluster.local/ns/bookinfo/sa/d",
                                  "version=v1", "HEALTHY"]]
    assert [r[1:3] + r[4:] for r in t["reviews:9080"]] == [["198.18.0.8:9080", "spiffe://x", "EJECTED"],
                                                          ["198.18.0.9:9080", "plaintext", "HEALTHY"]]
    assert t["example.com:80"] == [["example.com:80", "-", "-", "-", "passthrough"]]


def test_routes_table_summarises_matches_backends_timeouts_retries() -> None:
    t = by_target(route_rows(DUMP))
    first, second = t["reviews:9080"]
    assert first[1] == "reviews-route.0"
    assert first[2] == "header end-user=jason | path^=/api & !header x-debug present & method=GET"
    assert first[3] == f"{REVIEWS}[v2] 100%"
    assert first[4:6] == ["5s", "3x per 2s on 5xx,reset"]
    assert first[6] == "delay 7s 100%"
    assert second[2] == "*" and second[3] == f"{REVIEWS}[v1] 80%, {REVIEWS}[v3] 20%"
    assert second[4:6] == ["-", "-"] and second[6] == "mirror httpbin.httpbin.svc.cluster.local:8000[v2] 50%"
    # targets without a profile say so
    assert t["details:9080"] == [["details:9080", NO_PROFILE, "*", "-", "-", "-", "-"]]


def test_routes_without_any_profile_section() -> None:
    dump = {k: v for k, v in DUMP.items() if k != "profiles"}
    assert {r[1] for r in route_rows(dump)[1:]} == {NO_PROFILE}


def test_snake_case_profiles_read_the_same() -> None:
    snake = {"reviews:9080": {"routes": [{"name": "r", "timeout_ms": 1500, "backends": [
        {"authority": REVIEWS, "weight": 1}], "retry": {"attempts": 2, "retry_on": ["connect-failure"]}}],
        "traffic_policy": {"load_balancer": {"policy": "LOAD_BALANCER_POLICY_RANDOM", "locality_enabled": True}}}}
    dump = {"destinations": {}, "profiles": snake}
    (row,) = route_rows(dump)[1:]
    assert row[3:6] == [f"{REVIEWS} 100%", "1.5s", "2x on connect-failure"]
    (cluster,) = cluster_rows(dump)[1:]
    assert cluster[4] == "RANDOM +locality"


# The proxy's own dump (meshlet.proxy.profile.describe): compiled dataclasses, durations in seconds, flat policy.
PROXY_SHAPE: dict[str, Any] = {
    "destinations": {},
    "profiles": {"ratings:9080": {
        "stream_connected": True, "version": 3, "error": "", "name": "ratings.bookinfo.svc.cluster.local",
        "routed": True,
        "routes": [{"name": "ratings-fault", "matches": [{"headers": [{"name": "end-user",
                                                                      "value": {"exact": "jason"}, "invert": False}],
                                                         "query_params": [], "port": 0}],
                    "backends": [{"authority": "ratings.bookinfo.svc.cluster.local:9080", "weight": 100,
                                  "subset": "v1", "subset_labels": [["version", "v1"]]}],
                    "timeout": 0.25, "retry": {"attempts": 2, "per_try_timeout": 0.0, "on_5xx": False,
                                               "on_gateway": True, "on_reset": False, "on_connect": True,
                                               "on_409": False, "codes": [503]},
                    "fault": {"delay": 7.0, "delay_percent": 100.0, "abort_status": 0, "abort_percent": 0.0},
                    "mirror": {"backend": {"authority": "httpbin:8000", "subset": "v2"}, "percent": 100.0},
                    "direct": {"status": 204, "body": ""}}],
        "retry_budget": {"ratio": 0.2, "min_per_second": 10, "ttl": 10.0},
        "traffic_policy": {"lb": "CONSISTENT_HASH", "hash_key": {"header": "x-user", "source_ip": False},
                           "locality": False, "max_connections": 1, "connect_timeout": 0.0, "max_pending": 1,
                           "max_requests_per_connection": 0, "consecutive_5xx": 2, "consecutive_gateway": 0,
                           "outlier_interval": 1.0, "base_ejection": 15.0, "max_ejection_percent": 100,
                           "tls": {"mode": "ISTIO_MUTUAL"}},
        "subsets": [{"name": "v1", "labels": {"version": "v1"}, "traffic_policy": {}}]}},
}


def test_the_proxys_own_profile_shape() -> None:
    (row,) = route_rows(PROXY_SHAPE)[1:]
    assert row[1:6] == ["ratings-fault", "header end-user=jason",
                        "ratings.bookinfo.svc.cluster.local:9080[v1] 100%", "250ms",
                        "2x on gateway-error,connect-failure,503"]
    assert row[6] == "delay 7s 100%; mirror httpbin:8000[v2] 100%; direct 204"
    (cluster,) = cluster_rows(PROXY_SHAPE)[1:]
    assert cluster[3:] == ["v1", "CONSISTENT_HASH(header=x-user)", "maxConnections=1,http1MaxPendingRequests=1",
                           "5xx=2 gw=0 eject=15s max=100%", "ISTIO_MUTUAL"]
    broken = {"profiles": {"x:80": {"error": "bad regex", "routes": []}}}
    assert route_rows(broken)[1][1::5] == ["(no routes)", "profile error: bad regex"]


def test_match_descriptions() -> None:
    assert describe_match({}) == "*"
    assert describe_match({"headers": [{"name": "cookie", "value": {"regex": "^(.*?;)?(user=jason)(;.*)?$"}}]}) \
        == "header cookie~=^(.*?;)?(user=jason)(;.*)?$"
    assert describe_match({"queryParams": [{"name": "v", "value": {"exact": "1"}}], "port": 9080,
                           "sourceLabels": {"app": "sleep"}}) == "query v=1 & port=9080 & source app=sleep"
    assert describe_match({"uri": None, "authority": {"prefix": "rev", "ignoreCase": True}}) == \
        "authority^=rev (ci)"


def test_clusters_table_shows_traffic_policy() -> None:
    t = by_target(cluster_rows(DUMP))
    (reviews,) = t["reviews:9080"]
    assert reviews[1:5] == ["endpoints", "2", "v1,v3", "ROUND_ROBIN"]
    assert reviews[5] == "maxConnections=1,http1MaxPendingRequests=1"
    assert reviews[6] == "5xx=1 gw=0 eject=30s max=100%"
    assert reviews[7] == "ISTIO_MUTUAL"
    assert t["example.com:80"][0][1:] == ["passthrough", "0", "-", "-", "-", "-", "-"]


def test_secret_table_decodes_the_certificate() -> None:
    (row,) = secret_rows(DUMP, now=NOW)[1:]
    assert row[0] == IDENTITY and row[1] == "VALID" and row[2] == "abc123"
    assert row[4] == (NOW + datetime.timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert row[5] == "CN=meshlet issuer" and row[6] == "sha256:ab:cd"
    later = NOW + datetime.timedelta(days=2)
    assert secret_rows(DUMP, now=later)[1][1] == "EXPIRED"
    missing = {"identity": {"uri": IDENTITY, "last_error": "identity unreachable"}}
    assert secret_rows(missing)[1][:2] == [IDENTITY, "NO CERTIFICATE (identity unreachable)"]


def test_render_aligns_columns_and_json_sections() -> None:
    lines = render(DUMP, "endpoints").splitlines()
    assert lines[0].split() == ["TARGET", "ENDPOINT", "IDENTITY", "LABELS", "HEALTH"]
    assert lines[1].index("198.18") == lines[0].index("ENDPOINT")
    assert raw_section(DUMP, "endpoints") == DUMP["destinations"]
    assert raw_section(DUMP, "routes") == DUMP["profiles"]
    assert raw_section(DUMP, "secret")["uri"] == IDENTITY
    assert raw_section(DUMP, "clusters")["reviews:9080"]["endpoints"] == 2


# === the CLI against a real store and a fake admin endpoint ===

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata:
  name: productpage-v1-abc12
  namespace: bookinfo
  annotations: {meshlet.io/proxy: injected}
spec:
  containers: [{name: meshlet-proxy}, {name: productpage}]
---
apiVersion: v1
kind: Pod
metadata: {name: plain-abc12, namespace: bookinfo}
spec:
  containers: [{name: plain}]
"""


class _Admin(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        code = 200 if self.path == "/config_dump" else 404
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def admin() -> Iterator[int]:
    handler = type("Admin", (_Admin,), {"body": json.dumps(DUMP).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    result = CliRunner().invoke(cli, ["--state-dir", str(state), "apply", "-f", "-"], input=MANIFEST)
    assert result.exit_code == 0, result.output

    async def set_ips() -> None:
        store = SqliteStore(state / "store.db")
        try:
            for name in ("productpage-v1-abc12", "plain-abc12"):
                pod = await store.get("Pod", "bookinfo", name)
                assert pod is not None
                await store.update_status(replace(pod, status=PodStatus(phase="Running", pod_ip="127.0.0.1")))
        finally:
            await store.close()

    asyncio.run(set_ips())
    return state


def run(state: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--state-dir", str(state), "proxy-config", *args])


def test_cli_tables_and_json(state: Path, admin: int) -> None:
    result = run(state, "productpage-v1-abc12", "-n", "bookinfo", "routes", "--admin-port", str(admin))
    assert result.exit_code == 0, result.output
    assert "header end-user=jason" in result.output and "reviews-route.1" in result.output
    result = run(state, "productpage-v1-abc12", "-n", "bookinfo", "secret", "-o", "json", "--admin-port", str(admin))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["uri"] == IDENTITY
    result = run(state, "productpage-v1-abc12", "-n", "bookinfo", "endpoints", "--admin-port", str(admin))
    assert "198.18.0.5:9080" in result.output


def test_cli_clear_errors(state: Path, unused_tcp_port: int) -> None:
    result = run(state, "nope", "-n", "bookinfo", "routes")
    assert result.exit_code == 1 and "pod 'nope' not found in namespace 'bookinfo'" in result.output
    result = run(state, "plain-abc12", "-n", "bookinfo", "routes")
    assert result.exit_code == 1 and "pod bookinfo/plain-abc12 is not meshed" in result.output
    result = run(state, "productpage-v1-abc12", "-n", "bookinfo", "secret", "--admin-port", str(unused_tcp_port),
                 "--timeout", "2")
    assert result.exit_code == 1 and "is unreachable" in result.output
    result = run(state, "productpage-v1-abc12", "-n", "bookinfo", "bogus")
    assert result.exit_code == 2 and "routes" in result.output


def test_cli_without_a_mesh(tmp_path: Path) -> None:
    result = run(tmp_path / "none", "x", "routes")
    assert result.exit_code == 1 and "no local mesh" in result.output
