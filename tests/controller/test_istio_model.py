"""Istio / Gateway API kinds: the seed's examples load, broken variants are rejected with path + reason."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from meshlet.controller.model import (
    DEFAULT_REGISTRY,
    ManifestError,
    from_obj,
    load_text,
    to_obj,
)
from meshlet.controller.model.istio_common import (
    check_regex,
    fqdn,
    gateway_ref,
    host_matches,
    parse_duration,
    service_of,
)
from meshlet.controller.model.istio_destinationrule import DestinationRule
from meshlet.controller.model.istio_networking import ProxyConfig
from meshlet.controller.model.istio_security import (
    PeerAuthentication,
    RequestAuthentication,
)
from meshlet.controller.model.istio_virtualservice import VirtualService
from meshlet.e2e.seeds import SEED_EXAMPLES

EXAMPLES = SEED_EXAMPLES
if not EXAMPLES.is_dir():  # the repo's copy of the seed lives next to it in CI checkouts
    EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "examples"
GOOD_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.yaml") if not p.name.startswith("16-"))


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load_text(text)
    return [f"{p.path}: {p.message}" for p in info.value.problems]


VS = """\
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
"""


def test_parse_duration() -> None:
    assert [parse_duration(s) for s in ("1s", "500ms", "1.5s", "1m", "1h2m3s", "0", "250us")] == \
        [1.0, 0.5, 1.5, 60.0, 3723.0, 0.0, 0.00025]
    for bad in ("abc", "", "5", "1.5", "-1s", "1 s", "s"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)


def test_host_helpers() -> None:
    assert fqdn("reviews", "bookinfo") == "reviews.bookinfo.svc.cluster.local"
    assert fqdn("reviews.bookinfo.svc.cluster.local", "x") == "reviews.bookinfo.svc.cluster.local"
    assert fqdn("api.example.com", "x") == "api.example.com"
    assert fqdn("reviews.bookinfo.svc", "x") == "reviews.bookinfo.svc.cluster.local"
    assert fqdn("Reviews.", "x") == "reviews.x.svc.cluster.local"
    assert fqdn("*", "x") == "*" and fqdn("10.0.0.1", "x") == "10.0.0.1"
    assert service_of("reviews.bookinfo.svc.cluster.local") == ("bookinfo", "reviews")
    assert service_of("api.example.com") is None
    assert gateway_ref("istio-system/ingress", "default") == ("istio-system", "ingress")
    assert gateway_ref("ingress", "default") == ("default", "ingress")
    assert host_matches("*.example.com", "api.example.com") and not host_matches("*.example.com", "example.org")


def test_regex_checks_follow_re2() -> None:
    assert check_regex("^(.*?;)?(user=jason)(;.*)?$") is None
    assert "lookaround" in (check_regex("^(?!x).*") or "")
    assert "backreferences" in (check_regex(r"(a)\1") or "")
    assert "invalid regex" in (check_regex("(a") or "")


@pytest.mark.parametrize("path", GOOD_EXAMPLES, ids=lambda p: p.name)
def test_every_seed_example_loads_and_round_trips(path: Path) -> None:
    warnings: list[str] = []
    resources = load_text(path.read_text(), str(path), warnings=warnings)
    assert resources
    for r in resources:
        again = DEFAULT_REGISTRY.decode(to_obj(r))
        assert again == r


def test_fragment_is_rejected_naming_what_is_missing() -> None:
    found = problems((EXAMPLES / "16-canary-fragment.yaml").read_text())
    # no hosts alone would make it a delegate VirtualService (Istio's reading); no name makes it invalid
    assert found == ["metadata: missing required field"], found


def test_seed_spellings_are_reshaped_with_warnings() -> None:
    warnings: list[str] = []
    pa = load_text((EXAMPLES / "07-peer-authentication.yaml").read_text(), warnings=warnings)
    assert isinstance(pa[1], PeerAuthentication)
    assert pa[1].spec.mode == "STRICT" and pa[1].spec.port_level_mtls[8080].mode == "DISABLE"
    assert any("'mTLS' is accepted as a spelling of 'mtls'" in w for w in warnings)
    warnings.clear()
    (ra,) = load_text((EXAMPLES / "08-request-authentication.yaml").read_text(), warnings=warnings)
    assert isinstance(ra, RequestAuthentication)
    rule = ra.spec.jwt_rules[0]
    assert [(h.name, h.prefix) for h in rule.from_headers] == [("Authorization", "Bearer ")]
    assert [(c.header, c.claim) for c in rule.output_claim_to_headers] == [("X-User-Email", "email")]
    assert len(warnings) == 2 and "fromHeaders" in warnings[0] and "outputClaimToHeaders" in warnings[1]


def test_api_versions() -> None:
    (pc,) = load_text("apiVersion: networking.istio.io/v1alpha3\nkind: ProxyConfig\nmetadata: {name: p}\n"
                      "spec: {concurrency: 2}\n")
    assert isinstance(pc, ProxyConfig) and pc.spec.concurrency == 2
    for version in ("v1", "v1beta1", "v1alpha3"):
        (vs,) = load_text(VS.replace("v1alpha3", version) + "  - route: [{destination: {host: reviews}}]\n")
        assert isinstance(vs, VirtualService)
    found = problems("apiVersion: security.istio.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: p}\n")
    assert "use apiVersion: security.istio.io/v1" in found[0]


BROKEN = [
    ("  - route: [{destination: {host: reviews}}]\n    timeout: abc\n",
     "spec.http[0].timeout: invalid duration 'abc'"),
    ("  - match: [{uri: {regex: '(abc'}}]\n    route: [{destination: {host: reviews}}]\n",
     "spec.http[0].match[0].uri.regex: invalid regex '(abc'"),
    ("  - match: [{headers: {cookie: {regex: '^(?!x)'}}}]\n    route: [{destination: {host: reviews}}]\n",
     "spec.http[0].match[0].headers.cookie.regex: invalid regex '^(?!x)': lookaround"),
    (("  - route: [{destination: {host: reviews, subset: v1}, weight: 80},"
     " {destination: {host: reviews, subset: v2}, weight: 30}]\n"),
     "spec.http[0].route: total destination weight 110 != 100"),
    ("  - route: [{destination: {host: reviews}, weight: 120}]\n",
     "spec.http[0].route[0].weight: weight must be between 0 and 100, got 120"),
    ("  - route: [{destination: {host: reviews, port: {number: 70000}}}]\n",
     "spec.http[0].route[0].destination.port.number: port must be between 1 and 65535, got 70000"),
    ("  - fault: {abort: {httpStatus: 999, percentage: {value: 100}}}\n    route: [{destination: {host: reviews}}]\n",
     "spec.http[0].fault.abort.httpStatus: HTTP status must be between 200 and 599, got 999"),
    ("  - fault: {delay: {fixedDelay: 5s, percentage: {value: 150}}}\n    route: [{destination: {host: reviews}}]\n",
     "spec.http[0].fault.delay.percentage.value: percentage must be between 0 and 100, got 150"),
    ("  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 3, perTryTimeout: 2x, retryOn: 5xx}\n",
     "spec.http[0].retries.perTryTimeout: invalid duration '2x'"),
    ("  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 3, retryOn: '5xx,bogus'}\n",
     "spec.http[0].retries.retryOn: unknown retry policy 'bogus'"),
    ("  - route: [{destination: {host: reviews}}]\n    timout: 5s\n",
     "spec.http[0].timout: unknown field; did you mean 'timeout'?"),
    ("  - directResponse: {status: 200}\n    route: [{destination: {host: reviews}}]\n",
     "spec.http[0].directResponse: only one of route, redirect, directResponse, delegate may be set"),
    ("  - {}\n", "spec.http[0].route: a rule needs a route, redirect, directResponse or delegate"),
    ("  - match: [{withoutHeaders: {'a b': {exact: x}}}]\n    route: [{destination: {host: reviews}}]\n",
     "spec.http[0].match[0].withoutHeaders.a b: invalid header name 'a b'"),
]


@pytest.mark.parametrize("rules,expected", BROKEN, ids=[e for _, e in BROKEN])
def test_broken_virtual_services(rules: str, expected: str) -> None:
    found = problems(VS + rules)
    assert any(p.startswith(expected) for p in found), found


def test_broken_other_kinds() -> None:
    dr = ("apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n"
          "  host: reviews\n")
    assert "spec.trafficPolicy.loadBalancer.simple: must be one of" in problems(
        dr + "  trafficPolicy: {loadBalancer: {simple: FASTEST}}\n")[0]
    assert problems(dr + "  trafficPolicy: {outlierDetection: {interval: 1x}}\n")[0].startswith(
        "spec.trafficPolicy.outlierDetection.interval: invalid duration '1x'")
    assert problems(dr + "  subsets: [{name: v1}, {name: v1}]\n") == ["spec.subsets[1].name: duplicate subset name 'v1'"]
    assert problems(dr + "  trafficPolicy: {tls: {mode: ISTIO_MUTUAL, caCertificates: /x}}\n")[0].startswith(
        "spec.trafficPolicy.tls.caCertificates: must be empty with mode ISTIO_MUTUAL")
    assert problems(dr + "  trafficPolicy: {loadBalancer: {consistentHash: {}}}\n")[0].startswith(
        "spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName: exactly one of")
    se = ("apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {name: s}\nspec:\n"
          "  hosts: [db.example.com]\n")
    assert problems(se + "  resolution: DNS\n  location: MESH_OUTSIDE\n")[0].startswith(
        "spec.location: must be one of MESH_EXTERNAL, MESH_INTERNAL")
    assert problems(se + "  resolution: STATIC\n  ports: [{number: 5432, name: pg, protocol: TCP}]\n")[0] == \
        "spec.endpoints: resolution STATIC needs endpoints (or a workloadSelector)"
    pa = "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec:\n"
    assert problems(pa + "  mtls: {mode: STRIKT}\n")[0].startswith(
        "spec.mtls.mode: must be one of UNSET, DISABLE, PERMISSIVE, STRICT; got 'STRIKT'")
    assert problems(pa + "  mTLS: {mode: STRICT}\n  mtls: {mode: STRICT}\n")[0].startswith(
        "spec.mTLS: both 'mTLS' and 'mtls' given")
    ap = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n"
    assert problems(ap + "  action: CUSTOM\n")[0] == "spec.provider: action CUSTOM needs a provider"
    assert problems(ap + "  rules: [{from: [{source: {ipBlocks: [1.2.3.400]}}]}]\n")[0].startswith(
        "spec.rules[0].from[0].source.ipBlocks[0]: invalid IP address")
    mc = "apiVersion: meshlet.io/v1alpha1\nkind: MeshConfig\nmetadata: {name: other}\n"
    assert problems(mc)[0].startswith("metadata.name: the MeshConfig must be named 'default'")
    assert problems(mc.replace("other", "default") + "spec: {outboundTrafficPolicy: {mode: BLOCK}}\n")[0] \
        .startswith("spec.outboundTrafficPolicy.mode: must be one of REGISTRY_ONLY, ALLOW_ANY")
    hr = ("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: h}\nspec:\n"
          "  parentRefs: [{group: '', kind: Service, name: reviews, port: 9080}]\n  rules:\n")
    assert problems(hr + "  - matches: [{path: {type: RegularExpression, value: '(x'}}]\n")[0].startswith(
        "spec.rules[0].matches[0].path.value: invalid regex '(x'")
    assert problems(hr + "  - filters: [{type: RequestRedirect}]\n")[0] == \
        "spec.rules[0].filters[0].requestRedirect: required with type RequestRedirect"
    assert problems(hr + "  - backendRefs: [{name: reviews}]\n")[0] == \
        "spec.rules[0].backendRefs[0].port: a Service backend needs a port"


def test_typed_access_for_translators() -> None:
    (dr,) = load_text((EXAMPLES / "02-reviews-destination.yaml").read_text())
    assert isinstance(dr, DestinationRule)
    tp = dr.spec.traffic_policy
    assert tp is not None and tp.connection_pool is not None and tp.connection_pool.http is not None
    assert tp.connection_pool.http.h2_upgrade_policy == "UPGRADE"
    assert tp.load_balancer is not None and tp.load_balancer.simple == "LEAST_REQUEST"
    assert dr.spec.subset("v2") is not None and dr.spec.subset("v2").labels == {"version": "v2"}  # type: ignore[union-attr]
    (vs,) = load_text((EXAMPLES / "01-reviews-route.yaml").read_text())
    assert isinstance(vs, VirtualService)
    assert vs.spec.http[0].match[0].headers["cookie"].kind == "regex"
    assert vs.spec.http[1].is_catch_all and not vs.spec.http[2].is_catch_all
    retries = vs.spec.http[2].retries
    assert retries is not None and retries.retry_policies() == ["5xx", "reset", "connect-failure", "retriable-4xx"]
    assert parse_duration(vs.spec.http[2].timeout or "") == 5.0
    vs2 = from_obj(VirtualService, to_obj(vs))
    assert vs2 == vs


def test_get_names_resolve() -> None:
    for name, kind in [("vs", "VirtualService"), ("virtualservices", "VirtualService"), ("dr", "DestinationRule"),
                       ("se", "ServiceEntry"), ("gw", "Gateway"), ("gateways", "Gateway"), ("sidecars", "Sidecar"),
                       ("pa", "PeerAuthentication"), ("authorizationpolicies", "AuthorizationPolicy"),
                       ("requestauthentications", "RequestAuthentication"), ("telemetries", "Telemetry"),
                       ("proxyconfigs", "ProxyConfig"), ("httproutes", "HTTPRoute"), ("meshconfigs", "MeshConfig")]:
        assert DEFAULT_REGISTRY.resolve(name).kind == kind


def test_export_to_and_gateway_only_source_labels() -> None:
    found = problems(VS.replace("  hosts: [reviews]\n", "  hosts: [reviews]\n  exportTo: ['*', Bad_NS]\n")
                     + "  - route: [{destination: {host: reviews}}]\n")
    assert found == ["spec.exportTo[1]: invalid exportTo 'Bad_NS': use '*', '.' or a namespace name",
                     "spec.exportTo: '*' cannot be combined with other values"]
    gw_only = VS.replace("  hosts: [reviews]\n", "  hosts: [reviews]\n  gateways: [istio-system/ingress]\n")
    found = problems(gw_only + "  - match: [{sourceLabels: {app: web}}]\n    route: [{destination: {host: reviews}}]\n")
    assert found == [("spec.http[0].match[0].sourceLabels: sourceLabels need the 'mesh' gateway (this VirtualService "
                     "is bound to gateways istio-system/ingress only)")]
    load_text(gw_only.replace("[istio-system/ingress]", "[istio-system/ingress, mesh]")
              + "  - match: [{sourceLabels: {app: web}}]\n    route: [{destination: {host: reviews}}]\n")


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["h", "m", "s", "ms", "us", "ns"])),
                min_size=1, max_size=4))
def test_parse_duration_sums_its_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    assert parse_duration(text) == pytest.approx(sum(n * scale[u] for n, u in parts))


def test_sidecar_and_service_entry_select_by_labels() -> None:
    (sc,) = load_text("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec:\n"
                      "  workloadSelector: {labels: {app: ratings}}\n  egress: [{hosts: ['./*', 'istio-system/*']}]\n"
                      "  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
    assert sc.spec.workload_selector.matches({"app": "ratings", "version": "v1"})
    warnings: list[str] = []
    (sc,) = load_text("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec:\n"
                      "  workloadSelector: {matchLabels: {app: x}}\n", warnings=warnings)
    assert sc.spec.workload_selector.labels == {"app": "x"}
    assert warnings == [("<string>: document 1: spec.workloadSelector.matchLabels: 'matchLabels' is accepted as a "
                        "spelling of 'labels'; please write 'labels'")]
    assert problems("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec:\n"
                    "  egress: [{hosts: [reviews]}]\n") == [
        "spec.egress[0].hosts[0]: invalid host 'reviews': use 'namespace/dnsName' ('*', '.' or '~' as namespace)"]
