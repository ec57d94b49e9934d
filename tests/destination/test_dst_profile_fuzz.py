"""Whatever shape a stored rule has, building a profile never raises: a bad rule is skipped and reported."""
from types import SimpleNamespace

from dst_helpers import service
from dst_profile_helpers import World
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from meshlet.controller.model import ObjectMeta

FIELDS = [
    "match", "route", "destination", "host", "subset", "port", "number", "weight", "uri", "exact", "prefix", "regex",
    "headers", "request", "response", "set", "add", "remove", "timeout", "retries", "attempts", "per_try_timeout",
    "retry_on", "fault", "delay", "fixed_delay", "abort", "http_status", "grpc_status", "percentage", "value",
    "mirror", "mirrors", "mirror_percentage", "rewrite", "authority", "uri_regex_rewrite", "redirect",
    "redirect_code", "direct_response", "status", "body", "string", "bytes", "cors_policy", "allow_origins",
    "max_age", "query_params", "without_headers", "source_labels", "gateways", "ignore_uri_case", "name",
    "sni_hosts", "destination_subnets", "traffic_policy", "load_balancer", "simple", "consistent_hash",
    "connection_pool", "tcp", "http", "max_connections", "outlier_detection", "interval", "tls", "mode",
    "subsets", "labels", "port_level_settings",
]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=True),
                    st.sampled_from(["", "reviews", "5s", "v1", "*", "[", "GET", "5xx,503", "UNAVAILABLE", "-1s"]))
nodes = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["x-a", "end-user", "v1"]), children, max_size=2),
        st.dictionaries(st.sampled_from(FIELDS), children, max_size=4).map(lambda d: SimpleNamespace(**d)),
    ),
    max_leaves=25,
)


def rule(kind: str, spec) -> SimpleNamespace:
    return SimpleNamespace(kind=kind, namespaced=True, spec=spec,
                           metadata=ObjectMeta(name="fuzz", namespace="shop", creation_timestamp="2026-01-01T00:00:00Z"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(http=nodes, tcp=nodes, dr_spec=nodes)
def test_any_rule_shape_is_translated_or_skipped(http, tcp, dr_spec):
    world = World(services=[service("reviews", port=9080)])
    world.rules.upsert(rule("VirtualService", SimpleNamespace(hosts=("reviews",), http=http, tcp=tcp)))
    if isinstance(dr_spec, SimpleNamespace):
        dr_spec.host = "reviews"
        world.rules.upsert(rule("DestinationRule", dr_spec))
    built = world.build("reviews:9080")
    assert built.profile.fully_qualified_name == "reviews.shop.svc.cluster.local"
    assert built.profile.routes  # the rule's routes, or the default one when it was skipped
    bytes(built.profile)  # and it serializes
