"""Per-client scoping (pure): DestinationRule `workloadSelector` and Sidecar egress listeners with a `port`."""
import pytest
from dst_helpers import pod, service
from dst_profile_helpers import World

SELECTED_DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-for-canary-clients}
spec:
  host: reviews
  workloadSelector: {matchLabels: {app: productpage, track: canary}}
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets: [{name: v1, labels: {version: v1-canary}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
"""


def lb(profile) -> str:
    return profile.traffic_policy.load_balancer.policy.name if profile.traffic_policy else "none"


def test_workload_selector_destination_rule_applies_only_to_matching_callers():
    w = World(SELECTED_DR, services=[service("reviews")])
    canary = w.profile("reviews:80", labels={"app": "productpage", "track": "canary"})
    stable = w.profile("reviews:80", labels={"app": "productpage", "track": "stable"})
    assert lb(canary) == "RANDOM" and lb(stable) == "ROUND_ROBIN"
    # subsets named by routes come from the caller's rule too
    assert dict(canary.routes[0].backends[0].subset_labels) == {"version": "v1-canary"}
    assert dict(stable.routes[0].backends[0].subset_labels) == {"version": "v1"}
    assert [dict(s.labels) for s in canary.subsets] == [{"version": "v1-canary"}]


def test_workload_selector_labels_come_from_the_callers_pod_when_not_sent():
    w = World(SELECTED_DR, services=[service("reviews")],
              pods=[pod("pp-canary", "198.18.0.30", app="productpage", labels={"track": "canary"})])
    assert lb(w.profile("reviews:80", pod="pp-canary")) == "RANDOM"
    assert lb(w.profile("reviews:80", pod="someone-else")) == "ROUND_ROBIN"


def test_workload_selector_does_not_cross_namespaces():
    w = World(SELECTED_DR, services=[service("reviews")])
    # a matching client in another namespace gets the host namespace's selector-less rule
    assert lb(w.profile("reviews.shop:80", "other", labels={"app": "productpage", "track": "canary"})) == "ROUND_ROBIN"
    only_selected = SELECTED_DR.split("---\n")[1]
    assert lb(w.__class__(only_selected, services=[service("reviews")]).profile(
        "reviews:80", labels={"app": "x"})) == "none"


EGRESS_PORT = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["./reviews.shop.svc.cluster.local"]
  - hosts: ["./ratings.shop.svc.cluster.local", "istio-system/*"]
"""


@pytest.mark.parametrize(("path", "known"), [
    ("reviews:9080", True),       # the listener's port
    ("reviews:9081", False),      # same host, another port: not in that listener
    ("ratings:9080", True),       # a listener without port: any port
    ("ratings:7000", True),
])
def test_sidecar_egress_listener_port_limits_its_hosts_to_that_port(path, known):
    w = World(EGRESS_PORT, services=[service("reviews", port=int(path.split(":")[1])),
                                     service("ratings", port=int(path.split(":")[1]))])
    assert bool(w.profile(path).fully_qualified_name) is known
