"""Delegate VirtualServices (pure): a root's `http[].delegate` merged with the delegate's rules, Istio's way."""
import pytest
from dst_helpers import service
from dst_profile_helpers import World, backends, manifests
from meshlet.controller.model import ManifestError, load_text

REVIEWS = "reviews.shop.svc.cluster.local"
RATINGS = "ratings.team.svc.cluster.local"

ROOT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root}
spec:
  hosts: [reviews]
  http:
  - name: api
    match: [{uri: {prefix: /api}}, {uri: {prefix: /v2}, headers: {x-team: {exact: a}}}]
    delegate: {name: reviews-api, namespace: team}
    timeout: 3s
    retries: {attempts: 4, retryOn: unavailable}
  - route: [{destination: {host: reviews}}]
"""

DELEGATE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-api, namespace: team}
spec:
  http:
  - name: ratings
    match: [{uri: {prefix: /api/ratings}}]
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /other}}]
    route: [{destination: {host: ratings}}]
  - timeout: 1s
    route: [{destination: {host: reviews.shop.svc.cluster.local}}]
"""


def world(text: str) -> World:
    return World(text, services=[service("reviews", port=9080), service("ratings", "team", port=9080)])


def paths(route) -> list[tuple[str | None, str | None, dict]]:
    return [(m.path.prefix if m.path else None, m.path.exact if m.path else None,
             {h.name: h.value.exact for h in m.headers}) for m in route.matches]


def test_delegate_rules_replace_the_root_rule_merged_under_its_matches():
    p = world(ROOT + "---\n" + DELEGATE).profile("reviews:9080")
    ratings, catch_all, default = p.routes[:3]
    assert [r.name for r in p.routes] == ["api-ratings", "api", "root.1"]
    # the delegate's /api/ratings fits only the root's /api (not /v2): one merged match
    assert paths(ratings) == [("/api/ratings", None, {})]
    assert backends(ratings) == [(f"{RATINGS}:9080", 100, {})]  # short names resolve in the delegate's namespace
    # /other fits no root match: that rule conflicts and is dropped; a rule without match takes the root's
    assert paths(catch_all) == [("/api", None, {}), ("/v2", None, {"x-team": "a"})]
    assert backends(catch_all) == [(f"{REVIEWS}:9080", 100, {})]
    # unset fields come from the root rule; the delegate's own win
    assert (ratings.timeout_ms, ratings.retry.attempts, ratings.retry.retry_on) == (3000, 4, ["unavailable"])
    assert catch_all.timeout_ms == 1000 and catch_all.retry.attempts == 4
    assert default.matches == [] and backends(default) == [(f"{REVIEWS}:9080", 100, {})]


def test_missing_or_hidden_delegate_drops_only_the_delegating_rule():
    p = world(ROOT).profile("reviews:9080")
    assert [r.name for r in p.routes] == ["root.1"]
    hidden = DELEGATE.replace("spec:\n", "spec:\n  exportTo: ['.']\n", 1)
    assert [r.name for r in world(ROOT + "---\n" + hidden).profile("reviews:9080").routes] == ["root.1"]


def test_a_delegate_alone_applies_to_no_host():
    p = world(DELEGATE).profile("ratings.team:9080")
    assert [r.name for r in p.routes] == ["default"]


def test_source_labels_of_merged_matches_select_the_caller():
    root = ROOT.replace("match: [{uri: {prefix: /api}}, {uri: {prefix: /v2}, headers: {x-team: {exact: a}}}]",
                        "match: [{uri: {prefix: /api}, sourceLabels: {app: productpage}}]")
    w = world(root + "---\n" + DELEGATE)
    assert [r.name for r in w.profile("reviews:9080", labels={"app": "productpage"}).routes] == [
        "api-ratings", "api", "root.1"]
    assert [r.name for r in w.profile("reviews:9080", labels={"app": "other"}).routes] == ["root.1"]


@pytest.mark.parametrize(("root", "leaf", "conflict"), [
    ({"prefix": "/api"}, {"prefix": "/api/x"}, False),
    ({"prefix": "/api"}, {"prefix": "/b"}, True),
    ({"prefix": "/api"}, {"exact": "/api/1"}, False),
    ({"exact": "/a"}, {"exact": "/a"}, False),
    ({"exact": "/a"}, {"prefix": "/a"}, True),
    ({"regex": "/a.*"}, {"prefix": "/a"}, True),
    ({"prefix": "/a"}, {"regex": "/a.*"}, True),
])
def test_uri_conflicts_as_istio(root, leaf, conflict):
    from meshlet.controller.model.istio_common import StringMatch
    from meshlet.destination.delegate import string_conflict

    assert string_conflict(StringMatch(**root), StringMatch(**leaf)) is conflict


def test_model_accepts_a_delegate_and_checks_istio_rules():
    (vs,) = manifests(DELEGATE)
    assert vs.spec.hosts == ()
    bad = DELEGATE.replace("spec:\n", "spec:\n  gateways: [mesh]\n  tcp: [{route: [{destination: {host: x}}]}]\n", 1)
    bad = bad.replace("  - timeout: 1s\n", "  - delegate: {name: deeper}\n  - timeout: 1s\n")
    with pytest.raises(ManifestError) as e:
        load_text(bad)
    text = str(e.value)
    assert "spec.gateways: a delegate VirtualService (no hosts) takes no gateways" in text
    assert "spec.tcp: a delegate VirtualService (no hosts) has only http rules" in text
    assert "spec.http[2].delegate: a delegate VirtualService (no hosts) cannot delegate again" in text
    with pytest.raises(ManifestError) as e:
        load_text("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {}\n")
    assert "spec.hosts: missing" in str(e.value)
