"""Resilience on a real local mesh: retries and their budget, connection-pool limits, outlier ejection.

Run: `sudo python -m pytest e2e/scenarios/test_traffic_resilience.py -v` (or
`tests/e2e/test_traffic_scenarios.py`). One small mesh per module: httpbin
v1/v2 and the meshed and uninjected `sleep` clients. httpbin's
`/status/500,200,200,200` is a flaky upstream (a random pick per request) and
`POST /admin/fail/500` makes one pod keep failing. Each scenario applies its
VirtualService or DestinationRule, waits for it to show, checks, removes it.
The egress scenario (REGISTRY_ONLY, ServiceEntry) calls a small HTTP server
the test runs on the mesh's bridge address: a host outside the mesh.
"""
from __future__ import annotations

import ipaddress
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from meshlet.e2e.apps.httpbin import HTTPBIN_DIR
from meshlet.e2e.apps.httpbin import NAMESPACE as HTTPBIN
from meshlet.e2e.scenarios.harness import (
    BOOKINFO_DIR,
    LEGACY_NAMESPACE,
    NAMESPACE,
    UP_TIMEOUT,
    local_only,
    mesh_unavailable_reason,
    new_target,
    poll,
    stop_target,
)
from meshlet.e2e.scenarios.traffic import (
    APPLY_WAIT,
    HTTPBIN_URL,
    Applied,
    Clients,
    Reply,
    versions,
)
from meshlet.e2e.target import LocalMeshTarget, wait_for_pods

pytestmark = [pytest.mark.root, pytest.mark.slow]

FLAKY = f"{HTTPBIN_URL}/status/500,200,200,200"
BUDGET_TTL_S = 10.0
BUDGET_MIN_PER_S = 10
BUDGET_RATIO = 0.2
"""The default retry budget (Linkerd's): 20% of the requests of the last 10 s plus 10 retries per second."""


@pytest.fixture(scope="module")
def mesh() -> Iterator[Clients]:
    reason = mesh_unavailable_reason()
    if reason:
        pytest.skip(reason)
    target = new_target()
    try:
        if isinstance(target, LocalMeshTarget):
            target.run(["up", "-f", str(BOOKINFO_DIR / "bookinfo-namespace.yaml"), "-f",
                        str(BOOKINFO_DIR / "sleep.yaml"), "-f", str(HTTPBIN_DIR)])
        else:
            target.up(BOOKINFO_DIR / "bookinfo-namespace.yaml")
            target.apply(BOOKINFO_DIR / "sleep.yaml")
            target.apply(HTTPBIN_DIR)
        pods = [*wait_for_pods(target, NAMESPACE, expect=1, timeout=UP_TIMEOUT),
                *wait_for_pods(target, LEGACY_NAMESPACE, expect=1, timeout=UP_TIMEOUT),
                *wait_for_pods(target, HTTPBIN, expect=2, timeout=UP_TIMEOUT)]
        clients = Clients(target, pods)
        poll(lambda: True if clients.call(clients.pod("sleep", namespace=NAMESPACE), f"{HTTPBIN_URL}/get").status
             == 200 else None, timeout=90, what="httpbin through the mesh")
        yield clients
    finally:
        stop_target(target)


def statuses(replies: list) -> Counter[int]:
    return Counter(r.status for r in replies)


def hits(mesh: Clients, path: str) -> int:
    return sum(mesh.httpbin(v)["paths"].get(path, 0) for v in ("v1", "v2"))


def test_retries_turn_a_flaky_upstream_into_successes(mesh: Clients) -> None:
    sleep = mesh.pod("sleep", namespace=NAMESPACE)
    baseline = statuses(mesh.calls(sleep, FLAKY, count=40))
    assert baseline[500] > 0, f"the flaky upstream did not fail without retries (Istio retries no 5xx by default): " \
                              f"{baseline}"
    vs = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: httpbin-retries}
spec:
  hosts: [httpbin]
  http:
  - route: [{destination: {host: httpbin}}]
    retries: {attempts: 8, perTryTimeout: 5s, retryOn: 5xx}
"""
    with Applied(mesh.target, vs, HTTPBIN):
        poll(lambda: True if statuses(mesh.calls(sleep, FLAKY, count=20)) == {200: 20} else None,
             timeout=APPLY_WAIT, interval=0.5, what="retries to take effect")
        after = statuses(mesh.calls(sleep, FLAKY, count=40))
    assert after == {200: 40}, after


def test_retry_budget_caps_retries(mesh: Clients) -> None:
    """An upstream that always fails, 10 attempts each: the budget keeps upstream load far below 11x."""
    sleep = mesh.pod("sleep", namespace=NAMESPACE)
    path = "/status/500"
    vs = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: httpbin-budget}
spec:
  hosts: [httpbin]
  http:
  - route: [{destination: {host: httpbin}}]
    retries: {attempts: 10, perTryTimeout: 5s, retryOn: 5xx}
"""
    n = 60
    marker = uuid.uuid4().hex[:6]
    with Applied(mesh.target, vs, HTTPBIN):
        probe = f"{HTTPBIN_URL}/status/500?probe={marker}"

        def retried() -> bool | None:
            before = hits(mesh, path)
            mesh.call(sleep, probe)
            return True if hits(mesh, path) - before > 1 else None

        poll(retried, timeout=APPLY_WAIT, interval=1.0, what="retries on 5xx to take effect")
        before = hits(mesh, path)
        started = time.monotonic()
        replies = mesh.calls(sleep, f"{HTTPBIN_URL}{path}", count=n)
        elapsed = time.monotonic() - started
        upstream = hits(mesh, path) - before
    assert statuses(replies) == {500: n}
    unbudgeted = n * 11
    # what the budget allows over the run (its window slides): the floor per second plus a share of requests
    allowed = BUDGET_MIN_PER_S * (BUDGET_TTL_S + elapsed) + BUDGET_RATIO * (n + 200)
    print(f"budget: {upstream} upstream requests for {n} in {elapsed:.1f}s (allowed {allowed:.0f})")
    assert n < upstream <= n + allowed + 10, f"{upstream} upstream requests for {n} in {elapsed:.1f}s"
    assert upstream < unbudgeted / 2, f"{upstream} upstream requests: retries were not capped"


def test_connection_pool_limit_returns_503s(mesh: Clients) -> None:
    """Istio's circuit-breaking task: one connection, one pending request, three concurrent clients."""
    sleep = mesh.pod("sleep", namespace=NAMESPACE)
    dr = """\
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: httpbin-pool}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
"""
    url = f"{HTTPBIN_URL}/delay/0.5"
    with Applied(mesh.target, dr, HTTPBIN):
        def overflowing() -> Counter[int] | None:
            counts = statuses(mesh.calls(sleep, url, count=9, parallel=3))
            return counts if counts[503] else None

        counts = poll(overflowing, timeout=APPLY_WAIT + 30, interval=0.5, what="503s from the pool limit")
        assert counts[200] > 0 and set(counts) <= {200, 503}, counts
        legacy = mesh.pod("sleep", namespace=LEGACY_NAMESPACE)
        assert statuses(mesh.calls(legacy, url, count=6, parallel=3)) == {200: 6}, "an uninjected client overflowed"


def test_failing_endpoint_is_ejected_and_returns(mesh: Clients) -> None:
    sleep = mesh.pod("sleep", namespace=NAMESPACE)
    dr = """\
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: httpbin-outlier}
spec:
  host: httpbin
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 5s, maxEjectionPercent: 100}
"""
    with Applied(mesh.target, dr, HTTPBIN):
        mesh.httpbin("v2", "/admin/fail/500", method="POST")
        try:
            def ejected() -> Counter[str] | None:
                counts = versions(mesh.calls(sleep, f"{HTTPBIN_URL}/get", count=10))
                return counts if counts == {"v1": 10} else None

            poll(ejected, timeout=APPLY_WAIT + 30, interval=0.2, what="the failing v2 endpoint ejected")
        finally:
            mesh.httpbin("v2", "/admin/fail/0", method="POST")

        def back() -> Counter[str] | None:
            counts = versions(mesh.calls(sleep, f"{HTTPBIN_URL}/get", count=10))
            return counts if counts["v2"] and set(counts) == {"v1", "v2"} else None

        poll(back, timeout=60, interval=0.5, what="v2 back after its ejection time")


class _Outside(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"outside the mesh\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def outside_server(mesh: Clients) -> Iterator[tuple[str, int]]:
    """An HTTP server on the test mesh's bridge (gateway) address: reachable from pods, not a mesh service."""
    local = local_only(mesh.target, "the outside server listens on the local test mesh's bridge address")
    if not local.settings.pod_cidr:
        pytest.skip("needs a local test mesh with its own pod range (its bridge address hosts the outside server)")
    gateway = str(ipaddress.IPv4Network(local.settings.pod_cidr)[1])
    server = ThreadingHTTPServer((gateway, 0), _Outside)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_registry_only_blocks_an_unknown_host_until_a_service_entry_allows_it(
        mesh: Clients, outside_server: tuple[str, int]) -> None:
    ip, port = outside_server
    sleep = mesh.pod("sleep", namespace=NAMESPACE)
    legacy = mesh.pod("sleep", namespace=LEGACY_NAMESPACE)
    host = f"Host: outside.example:{port}"
    url = f"http://{ip}:{port}/"
    allow_any = mesh.call(sleep, url, host)
    assert (allow_any.status, allow_any.body) == (200, "outside the mesh\n"), "ALLOW_ANY did not pass through"
    registry_only = """\
apiVersion: meshlet.io/v1alpha1
kind: MeshConfig
metadata: {name: default}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""
    entry = f"""\
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {{name: outside}}
spec:
  hosts: [outside.example]
  location: MESH_EXTERNAL
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {ip}}}]
"""
    with Applied(mesh.target, registry_only, None):
        poll(lambda: True if mesh.call(sleep, url, host).status == 502 else None, timeout=APPLY_WAIT,
             interval=0.5, what="REGISTRY_ONLY blocking outside.example")
        assert mesh.call(legacy, url, host).status == 200, "an uninjected client was blocked"
        with Applied(mesh.target, entry, NAMESPACE):
            def allowed() -> Reply | None:
                reply = mesh.call(sleep, url, host)
                return reply if reply.status == 200 else None

            reply = poll(allowed, timeout=APPLY_WAIT, interval=0.5, what="the ServiceEntry allowing outside.example")
            assert reply.body == "outside the mesh\n"
        poll(lambda: True if mesh.call(sleep, url, host).status == 502 else None, timeout=APPLY_WAIT,
             interval=0.5, what="outside.example blocked again without its ServiceEntry")
