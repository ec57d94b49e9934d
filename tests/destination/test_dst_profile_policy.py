"""DestinationRule -> traffic policy, port policies and subsets (pure), and where the rule is looked up."""
import pytest

pytest.importorskip("meshlet.controller.model.istio_networking")

from dst_helpers import service
from dst_profile_helpers import World

FULL = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: full}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpCookie: {name: user, ttl: 10s}}
    connectionPool:
      tcp: {maxConnections: 1, connectTimeout: 250ms}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1, h2UpgradePolicy: DO_NOT_UPGRADE}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}
    tls: {mode: SIMPLE, sni: reviews.example, caCertificates: /etc/ca.pem, subjectAltNames: [reviews]}
    portLevelSettings:
    - port: {number: 9443}
      loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
  - name: v2
    labels: {version: v2}
"""


def test_traffic_policy_fields():
    p = World(FULL, services=[service("reviews", port=9080)]).profile("reviews:9080")
    tp = p.traffic_policy
    lb = tp.load_balancer
    assert lb.policy.name == "CONSISTENT_HASH"
    assert (lb.consistent_hash.http_cookie_name, lb.consistent_hash.cookie_ttl_ms) == ("user", 10_000)
    assert lb.locality_enabled  # outlierDetection turns on Istio's default locality LB
    cp = tp.connection_pool
    assert (cp.max_connections, cp.connect_timeout_ms, cp.http1_max_pending_requests) == (1, 250, 1)
    assert (cp.max_requests_per_connection, cp.h2_upgrade) == (1, False)
    od = tp.outlier_detection
    assert (od.consecutive_5xx_errors, od.interval_ms, od.base_ejection_time_ms, od.max_ejection_percent) == (
        1, 1000, 180_000, 100)
    assert (tp.tls.mode.name, tp.tls.sni, tp.tls.ca_certificates, tp.tls.subject_alt_names) == (
        "SIMPLE", "reviews.example", "/etc/ca.pem", ["reviews"])
    (port_policy,) = p.port_traffic_policies
    assert port_policy.port == 9443 and port_policy.policy.load_balancer.policy.name == "ROUND_ROBIN"
    v1, v2 = p.subsets
    # subset policy over the rule's, field by field
    assert v1.traffic_policy.load_balancer.policy.name == "RANDOM"
    assert v1.traffic_policy.connection_pool == cp
    assert v2.traffic_policy == tp


def test_port_level_settings_replace_the_rule_policy_for_their_port():
    p = World(FULL, services=[service("reviews", port=9443)]).profile("reviews:9443")
    tp = p.traffic_policy
    assert tp.load_balancer.policy.name == "ROUND_ROBIN"
    assert tp.connection_pool is None and tp.outlier_detection is None  # no inheritance


def test_outlier_defaults_and_simple_policies():
    text = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: reviews.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN, localityLbSetting: {enabled: false}}
    outlierDetection: {}
"""
    tp = World(text, services=[service("reviews")]).profile("reviews:80").traffic_policy
    od = tp.outlier_detection
    assert (od.consecutive_5xx_errors, od.interval_ms, od.base_ejection_time_ms, od.max_ejection_percent) == (
        5, 10_000, 30_000, 10)
    assert tp.load_balancer.policy.name == "LEAST_REQUEST" and not tp.load_balancer.locality_enabled


LOOKUP = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: in-root, namespace: istio-system}
spec: {host: "*.shop.svc.cluster.local", trafficPolicy: {loadBalancer: {simple: RANDOM}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: in-host-ns, namespace: shop}
spec: {host: reviews, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: in-caller-ns, namespace: client}
spec: {host: reviews.shop.svc.cluster.local, trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}}
"""


@pytest.mark.parametrize("caller, policy", [("client", "PASSTHROUGH"), ("shop", "ROUND_ROBIN"), ("third", "ROUND_ROBIN")])
def test_destination_rule_lookup_order(caller, policy):
    world = World(LOOKUP, services=[service("reviews"), service("ratings")])
    assert world.profile("reviews.shop:80", caller).traffic_policy.load_balancer.policy.name == policy
    assert world.profile("ratings.shop:80", caller).traffic_policy.load_balancer.policy.name == "RANDOM"  # root ns
