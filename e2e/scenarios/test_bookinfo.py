"""Bookinfo on a real local mesh: the scenarios of Istio's getting-started, as tests.

Run: `sudo python -m pytest e2e/scenarios -v` (or `tests/e2e/test_mesh_scenarios.py`,
which imports these). One mesh is brought up per module (slow: a control plane
and eight pods) in its own state dir, bridge and address ranges, and torn down
at the end.
"""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from meshlet.e2e.scenarios.harness import (
    BOOKINFO_DIR,
    BOOKINFO_PODS,
    LEGACY_NAMESPACE,
    NAMESPACE,
    BookinfoMesh,
    mesh_unavailable_reason,
    new_target,
    poll,
    start_bookinfo,
    stop_target,
)
from meshlet.e2e.stats import inbound_counters, parse_samples
from meshlet.e2e.target import LocalMeshTarget

pytestmark = [pytest.mark.root, pytest.mark.slow]

REVIEWS_API = "http://productpage:9080/api/v1/products/0/reviews"


@pytest.fixture(scope="module")
def bookinfo_mesh() -> Iterator[BookinfoMesh]:
    reason = mesh_unavailable_reason()
    if reason:
        pytest.skip(reason)
    target = new_target()
    try:
        yield start_bookinfo(target)
    finally:
        stop_target(target)


def scrape(mesh: BookinfoMesh, app: str, version: str | None = None) -> str:
    pod = mesh.pod(app, version)
    url = f"http://{mesh.target.pod_address(pod, 15090)}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def test_bookinfo_comes_up_meshed(bookinfo_mesh: BookinfoMesh) -> None:
    pods = bookinfo_mesh.pods
    assert len(pods) >= BOOKINFO_PODS
    assert all(p.ready and p.ip for p in pods)
    apps = sorted((p.labels.get("app", ""), p.labels.get("version", "")) for p in pods)
    assert apps == [("details", "v1"), ("productpage", "v1"), ("ratings", "v1"), ("reviews", "v1"),
                    ("reviews", "v2"), ("reviews", "v3"), ("sleep", "")]
    assert all(p.meshed for p in pods), [p.name for p in pods if not p.meshed]
    assert not any(p.meshed for p in bookinfo_mesh.legacy_pods)


def test_productpage_from_sleep(bookinfo_mesh: BookinfoMesh) -> None:
    sleep = bookinfo_mesh.pod("sleep")

    def page() -> str | None:
        status, body = bookinfo_mesh.curl(sleep, "http://productpage:9080/productpage")
        return body if status == 200 and "Book Reviews" in body else None

    html = poll(page, timeout=60, what="productpage with reviews through the mesh")
    assert "The Comedy of Errors" in html
    assert "Book Details" in html and "ISBN-10" in html


def test_reviews_answer_from_all_versions(bookinfo_mesh: BookinfoMesh) -> None:
    sleep = bookinfo_mesh.pod("sleep")
    seen: dict[str, dict] = {}

    def all_versions() -> bool | None:
        for body in bookinfo_mesh.curl_json_lines(sleep, REVIEWS_API, 15):
            if "version" in body:
                seen.setdefault(body["version"], body)
        return True if {"v1", "v2", "v3"} <= set(seen) else None

    poll(all_versions, timeout=120, interval=0.1, what=f"reviews v1, v2 and v3 (seen {sorted(seen)})")
    assert all("rating" not in r for r in seen["v1"]["reviews"])
    assert seen["v2"]["reviews"][0]["rating"] == {"stars": 5, "color": "black"}
    assert seen["v3"]["reviews"][0]["rating"] == {"stars": 5, "color": "red"}
    pods = {p.name for p in bookinfo_mesh.pods if p.labels.get("app") == "reviews"}
    assert {seen[v]["podname"] for v in ("v1", "v2", "v3")} == pods


def test_end_user_reaches_reviews(bookinfo_mesh: BookinfoMesh) -> None:
    sleep = bookinfo_mesh.pod("sleep")
    user = f"e2e-{uuid.uuid4().hex[:8]}"
    bodies = bookinfo_mesh.curl_json_lines(sleep, REVIEWS_API, 6, f"end-user: {user}")
    assert bodies, "no reviews answer"
    answered = {b.get("podname") for b in bodies}

    def logged() -> bool | None:
        for pod in bookinfo_mesh.pods:
            if pod.name in answered and user in bookinfo_mesh.target.logs(NAMESPACE, pod.name):
                return True
        return None

    poll(logged, timeout=30, what=f"end-user {user} in the access log of reviews pods {sorted(answered)}")


def test_server_side_metrics_show_mtls(bookinfo_mesh: BookinfoMesh) -> None:
    sleep = bookinfo_mesh.pod("sleep")
    assert bookinfo_mesh.curl_json_lines(sleep, REVIEWS_API, 5)

    def reviews_tls() -> float | None:
        total = 0.0
        for version in ("v1", "v2", "v3"):
            total += inbound_counters(parse_samples(scrape(bookinfo_mesh, "reviews", version))).tls_requests
        return total if total > 0 else None

    assert poll(reviews_tls, timeout=30, what='inbound request_total{tls="true"} on reviews') > 0
    pp = inbound_counters(parse_samples(scrape(bookinfo_mesh, "productpage")))
    assert pp.tls_requests > 0, "sleep -> productpage (both meshed) was not mTLS"


def test_uninjected_pod_reaches_productpage(bookinfo_mesh: BookinfoMesh) -> None:
    legacy = bookinfo_mesh.pod("sleep", namespace=LEGACY_NAMESPACE)

    def page() -> str | None:
        status, body = bookinfo_mesh.curl(legacy, "http://productpage.bookinfo:9080/productpage")
        return body if status == 200 else None

    assert "The Comedy of Errors" in poll(page, timeout=60, what="productpage from the uninjected legacy pod")


def test_demo_driver_prints_sane_numbers(bookinfo_mesh: BookinfoMesh) -> None:
    target = bookinfo_mesh.target
    if isinstance(target, LocalMeshTarget):
        where, env = ["--state-dir", str(target.settings.state_dir)], target.settings.env(os.environ)
    else:  # the kube target's settings come from this process's environment
        where, env = ["--target", "kube"], dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "meshlet.e2e.demo", *where, "--duration", "3", "--concurrency", "2",
         "--max-requests", "300"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    assert rows["NAME"][1:] == ["MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN"]
    pp = rows["productpage-v1"]
    assert pp[1] == "1/1"
    assert pp[2].endswith("%") and float(pp[2][:-1]) >= 90.0
    assert pp[3].endswith("rps") and float(pp[3][:-3]) > 0
    assert pp[4].endswith("ms")
    for name in ("details-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1"):
        assert rows[name][1] == "1/1", proc.stdout
    # productpage calls details once per page: details saw traffic too
    assert rows["details-v1"][3] != "-", proc.stdout


# Keep this test last: it takes ratings away from the module's mesh.
def test_ratings_down_shows_bookinfo_error(bookinfo_mesh: BookinfoMesh) -> None:
    sleep = bookinfo_mesh.pod("sleep")
    bookinfo_mesh.target.delete("deployment", NAMESPACE, "ratings-v1")
    try:
        def rating_error() -> dict | None:
            for body in bookinfo_mesh.curl_json_lines(sleep, REVIEWS_API, 6):
                if body.get("version") in ("v2", "v3"):
                    rating = body["reviews"][0].get("rating") or {}
                    if "error" in rating:
                        return body
            return None

        body = poll(rating_error, timeout=90, interval=0.1, what="reviews v2/v3 reporting ratings unavailable")
        assert body["reviews"][1]["rating"] == {"error": "Ratings service is currently unavailable"}

        def page_error() -> str | None:
            status, html = bookinfo_mesh.curl(sleep, "http://productpage:9080/productpage")
            return html if status == 200 and "Ratings service is currently unavailable" in html else None

        html = poll(page_error, timeout=60, what="the product page showing the ratings error")
        assert "Book Reviews" in html
    finally:
        bookinfo_mesh.target.apply(BOOKINFO_DIR)
