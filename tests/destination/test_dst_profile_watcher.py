"""ProfileWatcher: first profile at once, only changed profiles afterwards, latest wins, Pod batches scoped."""
import pytest
import structlog

pytest.importorskip("meshlet.controller.model.istio_virtualservice")

from dst_helpers import TD, pod, service
from dst_profile_helpers import resources
from meshlet.destination.lookup import CallerRef
from meshlet.destination.profile_watcher import LatestProfile, ProfileWatcher
from meshlet.destination.targets import parse_path
from meshlet.destination.watcher import EndpointsWatcher

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http: [{timeout: 3s, route: [{destination: {host: web}}]}]
"""


def drain(listener):
    out = []
    while not listener.queue.empty():
        out.append(listener.queue.get_nowait())
    return out


def setup():
    w = EndpointsWatcher(trust_domain=TD, log=structlog.get_logger())
    w.load([service("web")], [pod("web-0", "198.18.0.10")])
    return w, ProfileWatcher(w, structlog.get_logger())


def test_first_profile_at_once_then_only_changes_latest_wins():
    w, profiles = setup()
    listener = LatestProfile()
    profiles.subscribe(parse_path("web", "shop"), CallerRef("shop"), listener, "web:80")
    (first,) = drain(listener)
    assert [r.name for r in first.routes] == ["default"]
    w.apply("ADDED", pod("web-1", "198.18.0.11"))
    w.publish()
    assert drain(listener) == []  # nothing relevant changed
    (vs,) = resources(VS)
    w.apply("ADDED", vs)
    w.publish()
    w.apply("DELETED", vs)
    w.publish()
    w.apply("ADDED", vs)
    w.publish()
    (latest,) = drain(listener)  # a queue of one: only the newest unsent profile
    assert latest.routes[0].timeout_ms == 3000
    profiles.unsubscribe(listener)
    w.apply("DELETED", vs)
    w.publish()
    assert drain(listener) == []


def test_pod_batches_recompute_only_pod_dependent_profiles():
    w, profiles = setup()
    calls = []
    compute = profiles.compute
    profiles.compute = lambda *a, **k: calls.append(a[0]) or compute(*a, **k)
    by_name, by_ip, by_pod = LatestProfile(), LatestProfile(), LatestProfile()
    profiles.subscribe(parse_path("web", "shop"), CallerRef("shop", "c", (("app", "c"),)), by_name)
    profiles.subscribe(parse_path("198.18.0.10:8080"), CallerRef("shop"), by_ip)
    profiles.subscribe(parse_path("web", "shop"), CallerRef("shop", "c"), by_pod)
    calls.clear()
    w.apply("MODIFIED", pod("web-0", "198.18.0.10", ready=False))
    w.publish()
    assert [str(t) for t in calls] == ["198.18.0.10:8080", "web.shop:80"]
    calls.clear()
    w.apply("ADDED", service("other"))
    w.publish()
    assert len(calls) == 3


def test_a_failing_translation_still_answers_at_once_and_recovers():
    w, profiles = setup()
    compute, broken = profiles.compute, [True]

    def flaky(*a, **k):
        if broken[0]:
            raise RuntimeError("bug")
        return compute(*a, **k)

    profiles.compute = flaky
    listener = LatestProfile()
    profiles.subscribe(parse_path("web", "shop"), CallerRef("shop"), listener)
    (empty,) = drain(listener)
    assert empty.routes == []
    broken[0] = False
    w.apply("ADDED", service("other"))
    w.publish()
    (fixed,) = drain(listener)
    assert [r.name for r in fixed.routes] == ["default"]
