"""Traffic management on a real local mesh: Istio's request-routing, fault-injection, timeout and mirroring tasks.

Run: `sudo python -m pytest e2e/scenarios/test_traffic_management.py -v` (or
`tests/e2e/test_traffic_scenarios.py`, which imports these). One mesh per
module runs Bookinfo (with the meshed and the uninjected `sleep` clients) and
httpbin v1/v2; each scenario applies its VirtualService (from the seed's
examples where one fits, through `MeshTarget.apply`), waits until the
behaviour shows (a change reaches the proxies within a second; the polls are
generous for busy machines), checks it and deletes its resources again.

Every scenario is bounded: at most a few hundred requests, one curl process
per batch (URL globbing, one keep-alive connection), timeouts on every call.
Retries, the retry budget, connection-pool limits and outlier ejection are in
test_traffic_resilience.py; the helpers in traffic.py.
"""
from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from meshlet.e2e.apps.httpbin import HTTPBIN_DIR, ROUTING_DIR
from meshlet.e2e.apps.httpbin import NAMESPACE as HTTPBIN
from meshlet.e2e.pods import PodInfo
from meshlet.e2e.scenarios.harness import (
    LEGACY_NAMESPACE,
    NAMESPACE,
    UP_TIMEOUT,
    BookinfoMesh,
    mesh_unavailable_reason,
    new_target,
    poll,
    start_bookinfo,
    stop_target,
)
from meshlet.e2e.scenarios.traffic import (
    APPLY_WAIT,
    HTTPBIN_URL,
    Applied,
    Clients,
    Reply,
    seed,
    versions,
)
from meshlet.e2e.target import LocalMeshTarget, wait_for_pods

pytestmark = [pytest.mark.root, pytest.mark.slow]

REVIEWS_API = "http://productpage:9080/api/v1/products/0/reviews"

DESTINATION_RULES = """\
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: ratings, namespace: bookinfo}
spec:
  host: ratings
  subsets:
  - {name: v1, labels: {version: v1}}
"""


@dataclass
class TrafficMesh(Clients):
    """Bookinfo and httpbin on one mesh."""

    bookinfo: BookinfoMesh | None = None

    def sleep(self, namespace: str = NAMESPACE) -> PodInfo:
        return self.pod("sleep", namespace=namespace)

    def reviews(self, pod: PodInfo, count: int, *headers: str) -> list[dict]:
        assert self.bookinfo is not None
        return self.bookinfo.curl_json_lines(pod, REVIEWS_API, count, *headers)


@pytest.fixture(scope="module")
def traffic_mesh() -> Iterator[TrafficMesh]:
    reason = mesh_unavailable_reason()
    if reason:
        pytest.skip(reason)
    target = new_target()
    try:
        bookinfo = start_bookinfo(target)
        target.apply(HTTPBIN_DIR)
        httpbin = wait_for_pods(target, HTTPBIN, expect=2, timeout=UP_TIMEOUT)
        mesh = TrafficMesh(target, [*bookinfo.pods, *bookinfo.legacy_pods, *httpbin], bookinfo)
        httpbin_subsets = (ROUTING_DIR / "destination-rule.yaml").read_text()
        with Applied(target, DESTINATION_RULES, NAMESPACE), Applied(target, httpbin_subsets, HTTPBIN):
            poll(lambda: True if mesh.call(mesh.sleep(), f"{HTTPBIN_URL}/get").status == 200 else None,
                 timeout=90, what="httpbin through the mesh")
            yield mesh
    finally:
        stop_target(target)


def test_weighted_split_80_20(traffic_mesh: TrafficMesh) -> None:
    """Seed 14 (80/20 between subsets v1 and v2), aimed at httpbin: 500 requests within ±5%."""
    vs = seed("14-weights-80-20.yaml", **{"name: myapp": "name: httpbin-80-20", "host: myapp": "host: httpbin",
                                           "- myapp": "- httpbin"})
    sleep = traffic_mesh.sleep()
    with Applied(traffic_mesh.target, vs, HTTPBIN):
        def split() -> Counter[str] | None:
            counts = versions(traffic_mesh.calls(sleep, f"{HTTPBIN_URL}/get", count=100))
            return counts if counts["v1"] > 60 and counts["v1"] + counts["v2"] == 100 else None

        poll(split, timeout=APPLY_WAIT, interval=0.5, what="the 80/20 split to take effect")
        counts = versions(traffic_mesh.calls(sleep, f"{HTTPBIN_URL}/get", count=500))
        if isinstance(traffic_mesh.target, LocalMeshTarget):  # what the client's proxy received, as a user sees it
            shown = traffic_mesh.target.run(["proxy-config", sleep.name, "-n", sleep.namespace, "routes"]).stdout
            assert any("[v1] 80%" in line and "[v2] 20%" in line for line in shown.splitlines()), shown
    assert counts["v1"] + counts["v2"] == 500, counts
    assert abs(counts["v1"] / 500 - 0.8) <= 0.05, counts


def test_end_user_jason_reaches_reviews_v2(traffic_mesh: TrafficMesh) -> None:
    """Istio's request-routing task: `end-user: jason` to reviews v2, everyone else to v1."""
    vs = """\
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews-jason}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""
    sleep = traffic_mesh.sleep()
    with Applied(traffic_mesh.target, vs, NAMESPACE):
        def jason_on_v2() -> list[dict] | None:
            bodies = traffic_mesh.reviews(sleep, 10, "end-user: jason")
            return bodies if len(bodies) == 10 and {b.get("version") for b in bodies} == {"v2"} else None

        poll(jason_on_v2, timeout=APPLY_WAIT, interval=0.5, what="end-user jason answered by reviews v2 only")
        others = traffic_mesh.reviews(sleep, 10, "end-user: someone-else")
        assert {b.get("version") for b in others} == {"v1"}, others
        anonymous = traffic_mesh.reviews(sleep, 10)
        assert {b.get("version") for b in anonymous} == {"v1"}


def test_seed_cookie_rule_routes_jason_to_v2(traffic_mesh: TrafficMesh) -> None:
    """Seed 01 unchanged: the `user=jason` cookie goes to v2, the rest splits 50/50 between v1 and v3."""
    sleep = traffic_mesh.sleep()
    with Applied(traffic_mesh.target, seed("01-reviews-route.yaml"), NAMESPACE):
        def jason_on_v2() -> bool | None:
            bodies = traffic_mesh.reviews(sleep, 10, "Cookie: user=jason")
            return True if len(bodies) == 10 and {b.get("version") for b in bodies} == {"v2"} else None

        poll(jason_on_v2, timeout=APPLY_WAIT, interval=0.5, what="the user=jason cookie answered by v2 only")
        others = traffic_mesh.reviews(sleep, 30, "Cookie: user=jasonette")
        assert {b.get("version") for b in others} == {"v1", "v3"}, Counter(b.get("version") for b in others)


def test_delay_fault_on_ratings_shows_the_reviews_error(traffic_mesh: TrafficMesh) -> None:
    """Istio's fault-injection task with seed 04 (delay for end-user jason on ratings), at the task's 7 s.

    reviews v2 waits up to 10 s for ratings, productpage gives reviews 3 s and
    one retry: productpage reports the reviews error after its own ~6 s.
    """
    routing = """\
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews-jason-v2}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""
    fault = seed("04-ratings-fault.yaml", **{"fixedDelay: 5s": "fixedDelay: 7s"})
    sleep = traffic_mesh.sleep()
    with Applied(traffic_mesh.target, routing + "---\n" + fault, NAMESPACE):
        def reviews_error() -> Reply | None:
            reply = traffic_mesh.call(sleep, "http://productpage:9080/productpage", "end-user: jason", max_time=20)
            return reply if reply.status == 200 and "product reviews are currently unavailable" in reply.body \
                else None

        reply = poll(reviews_error, timeout=APPLY_WAIT + 30, interval=0.5,
                     what="productpage reporting the reviews error for jason")
        assert "Error fetching product reviews!" in reply.body
        assert reply.seconds >= 5.5, f"the error came after {reply.seconds}s, before productpage's two 3 s tries"
        other = traffic_mesh.call(sleep, "http://productpage:9080/productpage", "end-user: someone-else")
        assert other.status == 200 and "Book Reviews" in other.body
        assert "product reviews are currently unavailable" not in other.body


def test_abort_returns_the_status_at_once_and_uninjected_clients_are_unaffected(traffic_mesh: TrafficMesh) -> None:
    """An abort answers from the client's proxy: httpbin's /delay/5 never runs (its counters do not move),
    so the status comes at once, not after 5 s; a client without a proxy gets through."""
    vs = """\
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: httpbin-abort}
spec:
  hosts: [httpbin]
  http:
  - fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: httpbin}}]
"""
    sleep = traffic_mesh.sleep()
    path = f"/delay/5?abort={uuid.uuid4().hex[:8]}"
    with Applied(traffic_mesh.target, vs, HTTPBIN):
        poll(lambda: True if traffic_mesh.call(sleep, f"{HTTPBIN_URL}/status/200").status == 503 else None,
             timeout=APPLY_WAIT, interval=0.5, what="the abort to take effect")
        before = sum(traffic_mesh.httpbin(v)["paths"].get("/delay/5", 0) for v in ("v1", "v2"))
        replies = traffic_mesh.calls(sleep, f"{HTTPBIN_URL}{path}", count=5)
        assert [r.status for r in replies] == [503] * 5
        after = sum(traffic_mesh.httpbin(v)["paths"].get("/delay/5", 0) for v in ("v1", "v2"))
        assert after == before, "aborted requests reached httpbin"
        legacy = traffic_mesh.sleep(LEGACY_NAMESPACE)
        assert traffic_mesh.call(legacy, f"{HTTPBIN_URL}/status/200").status == 200


def test_route_timeout_gives_504(traffic_mesh: TrafficMesh) -> None:
    vs = """\
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: httpbin-timeout}
spec:
  hosts: [httpbin]
  http:
  - route: [{destination: {host: httpbin}}]
    timeout: 1s
"""
    sleep = traffic_mesh.sleep()
    with Applied(traffic_mesh.target, vs, HTTPBIN):
        def timed_out() -> Reply | None:
            reply = traffic_mesh.call(sleep, f"{HTTPBIN_URL}/delay/3")
            return reply if reply.status == 504 else None

        reply = poll(timed_out, timeout=APPLY_WAIT + 10, interval=0.5, what="a 504 at the route timeout")
        assert reply.seconds >= 0.9
        assert traffic_mesh.call(sleep, f"{HTTPBIN_URL}/get").status == 200
        legacy = traffic_mesh.sleep(LEGACY_NAMESPACE)
        assert traffic_mesh.call(legacy, f"{HTTPBIN_URL}/delay/2").status == 200, "an uninjected client timed out"


def test_mirror_receives_copies_while_the_client_sees_only_the_primary(traffic_mesh: TrafficMesh) -> None:
    """Seed 03 unchanged: everything to v1, mirrored 100% to v2."""
    sleep = traffic_mesh.sleep()
    with Applied(traffic_mesh.target, seed("03-httpbin-mirror.yaml"), HTTPBIN):
        poll(lambda: True if {r.version for r in traffic_mesh.calls(sleep, f"{HTTPBIN_URL}/get", count=10)}
             == {"v1"} else None, timeout=APPLY_WAIT, interval=0.5, what="all of httpbin's traffic on v1")
        path = f"/anything/mirror-{uuid.uuid4().hex[:8]}"
        replies = traffic_mesh.calls(sleep, f"{HTTPBIN_URL}{path}", count=20)
        assert [(r.status, r.version) for r in replies] == [(200, "v1")] * 20

        def mirrored() -> int | None:
            copies = traffic_mesh.httpbin("v2")["paths"].get(path, 0)
            return copies if copies >= 20 else None

        copies = poll(mirrored, timeout=30, what=f"20 mirrored copies of {path} on httpbin v2")
        assert copies == 20
        assert traffic_mesh.httpbin("v1")["paths"].get(path) == 20
