"""VirtualService -> profile routes (pure), from YAML through the model loader."""
from pathlib import Path

import pytest

pytest.importorskip("meshlet.controller.model.istio_virtualservice")

from dst_helpers import pod, service
from dst_profile_helpers import World, backends
from meshlet.destination.profiles import MISSING_SUBSET_LABEL
from meshlet.e2e.seeds import SEED_EXAMPLES

SEEDS = SEED_EXAMPLES
DEFAULT_RETRY_ON = ["connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"]
REVIEWS = "reviews.shop.svc.cluster.local"


def svcs(*names, port=9080):
    return [service(n, port=port) for n in names]


def test_no_virtual_service_gives_one_default_route_with_istio_default_retries():
    p = World(services=svcs("reviews")).profile("reviews:9080")
    assert p.fully_qualified_name == REVIEWS
    (route,) = p.routes
    assert route.name == "default" and route.matches == []
    assert backends(route) == [("reviews:9080", 100, {})]  # the target itself, as the proxy named it
    assert World(services=svcs("reviews")).profile("Reviews").routes[0].backends[0].authority == "reviews:80"
    assert route.retry.attempts == 2 and route.retry.retry_on == DEFAULT_RETRY_ON
    assert route.retry.retriable_status_codes == [] and route.timeout_ms == 0
    assert (p.retry_budget.retry_ratio, p.retry_budget.min_retries_per_second) == (pytest.approx(0.2), 10)
    assert p.traffic_policy is None and p.subsets == []


def test_unknown_target_has_an_empty_profile():
    p = World(services=svcs("reviews")).profile("nothing:80")
    assert p.fully_qualified_name == "" and p.routes == [] and p.retry_budget is None


def test_seed_reviews_route_with_destination_rule():
    text = (SEEDS / "01-reviews-route.yaml").read_text() + "---\n" + (SEEDS / "02-reviews-destination.yaml").read_text()
    p = World(text, services=svcs("reviews")).profile("reviews:9080")
    cookie, split, api = p.routes
    (m,) = cookie.matches
    assert [(h.name, h.value.regex, h.invert) for h in m.headers] == [("cookie", "^(.*?;)?(user=jason)(;.*)?$", False)]
    assert backends(cookie) == [(f"{REVIEWS}:9080", 100, {"version": "v2"})]
    assert cookie.backends[0].subset == "v2"
    assert split.matches == []
    assert backends(split) == [(f"{REVIEWS}:9080", 50, {"version": "v1"}),
                               (f"{REVIEWS}:9080", 50, {MISSING_SUBSET_LABEL: "v3"})]  # v3 is not in the rule
    assert api.matches[0].path.prefix == "/api/reviews" and api.timeout_ms == 5000
    assert (api.retry.attempts, api.retry.per_try_timeout_ms) == (3, 2000)
    assert api.retry.retry_on == ["5xx", "reset", "connect-failure", "retriable-4xx"]
    # the DestinationRule
    tp = p.traffic_policy
    assert tp.connection_pool.max_connections == 100 and tp.connection_pool.http1_max_pending_requests == 100
    assert tp.connection_pool.http2_max_requests == 1000 and tp.connection_pool.h2_upgrade
    assert tp.load_balancer.locality_enabled and tp.load_balancer.policy.name == "LEAST_REQUEST"
    assert tp.tls.mode.name == "ISTIO_MUTUAL"
    assert [(s.name, dict(s.labels)) for s in p.subsets] == [("v1", {"version": "v1"}), ("v2", {"version": "v2"})]
    assert p.subsets[0].traffic_policy == tp  # inherited


@pytest.mark.parametrize("name, check", [
    ("03-httpbin-mirror.yaml", lambda r: (r.mirror.authority, r.mirror.percent, r.mirror.subset)
     == ("httpbin.shop.svc.cluster.local:8000", 100.0, "v2")),
    ("04-ratings-fault.yaml", lambda r: (r.fault.delay_ms, r.fault.delay_percent, r.fault.abort_http_status,
                                         r.fault.abort_grpc_status) == (5000, 100.0, 0, -1)),
    ("14-weights-80-20.yaml", lambda r: [b.weight for b in r.backends] == [80, 20]),
    ("12-myapp-canary.yaml", lambda r: r.matches[0].headers[0].value.exact == "true"),
])
def test_seed_examples_translate(name, check):
    world = World((SEEDS / name).read_text(), services=[service("httpbin", port=8000), *svcs("ratings", "myapp")])
    host = {"03": "httpbin:8000", "04": "ratings:9080", "14": "myapp:9080", "12": "myapp:9080"}[name[:2]]
    assert check(world.profile(host).routes[0])


MATCHES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: m}
spec:
  hosts: [reviews]
  http:
  - match:
    - uri: {prefix: /API}
      ignoreUriCase: true
      method: {exact: GET}
      authority: {regex: "rev.*"}
      port: 9080
      headers:
        end-user: {exact: jason}
        x-any: {}
      withoutHeaders:
        x-skip: {prefix: "1"}
      queryParams:
        debug: {exact: "1"}
    - uri: {regex: "^/v[0-9]+/.*"}
      ignoreUriCase: true
    route: [{destination: {host: reviews}}]
"""


def test_request_matches():
    (route,) = World(MATCHES, services=svcs("reviews")).profile("reviews:9080").routes
    first, second = route.matches
    assert (first.path.prefix, first.path.ignore_case) == ("/API", True)
    assert first.method.exact == "GET" and first.authority.regex == "rev.*" and first.port == 9080
    headers = {(h.name, h.invert): h.value for h in first.headers}
    assert headers[("end-user", False)].exact == "jason"
    assert headers[("x-any", False)] is None  # presence
    assert headers[("x-skip", True)].prefix == "1"
    assert [(q.name, q.value.exact) for q in first.query_params] == [("debug", "1")]
    assert (second.path.regex, second.path.ignore_case) == ("^/v[0-9]+/.*", False)  # ignoreUriCase: exact/prefix only


SOURCES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: src}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: productpage}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{sourceNamespace: other}, {gateways: [istio-system/ingress]}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""


@pytest.mark.parametrize("caller, kw, subsets", [
    ("shop", {"labels": {"app": "productpage"}}, ["v2", "v1"]),
    ("shop", {"pod": "pp-0"}, ["v2", "v1"]),            # labels looked up from the caller's pod
    ("shop", {"labels": {"app": "other"}}, ["v1"]),
    ("other", {}, ["v3", "v1"]),
])
def test_source_selectors_are_evaluated_for_the_caller(caller, kw, subsets):
    world = World(SOURCES, services=svcs("reviews"), pods=[pod("pp-0", "198.18.0.3", app="productpage")])
    routes = world.profile("reviews.shop:9080", caller, **kw).routes
    assert [r.backends[0].subset for r in routes] == subsets
    assert all(not m.source_labels and not m.source_namespace for r in routes for m in r.matches)


ACTIONS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: actions}
spec:
  hosts: [reviews]
  http:
  - name: moved
    match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: web, port: 8080, scheme: https}
  - match: [{uri: {exact: /gone}}]
    directResponse: {status: 410, body: {string: gone}}
  - match: [{uri: {prefix: /api}}]
    rewrite: {uri: /v2, authority: reviews-v2}
    headers:
      request: {set: {X-A: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {remove: [server]}
    corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {regex: ".*\\\\.b\\\\.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-h]
      exposeHeaders: [x-e]
      maxAge: 24h
      allowCredentials: true
    fault:
      abort: {grpcStatus: UNAVAILABLE}
    retries: {attempts: 0}
    route:
    - destination: {host: reviews, port: {number: 9090}}
      weight: 30
      headers: {request: {set: {x-dst: a}}}
    - destination: {host: ratings}
      weight: 70
  - match: [{uri: {regex: "^/r/(.*)$"}}]
    rewrite: {uriRegexRewrite: {match: "^/r/(.*)$", rewrite: "/\\\\1"}}
    retries: {attempts: 4, retryOn: "503,gateway-error"}
    mirrors: [{destination: {host: ratings}, percentage: {value: 25}}]
    route: [{destination: {host: reviews}}]
"""


def test_route_actions():
    world = World(ACTIONS, services=[service("reviews", port=9080), service("ratings", port=9090)])
    moved, gone, api, regex = world.profile("reviews:9080").routes
    assert moved.name == "moved" and moved.backends == []
    r = moved.redirect
    assert (r.uri, r.authority, r.port, r.scheme, r.response_code) == ("/new", "web", 8080, "https", 301)
    assert (gone.direct_response.status, gone.direct_response.body) == (410, b"gone")
    assert (api.rewrite.uri, api.rewrite.authority) == ("/v2", "reviews-v2")
    assert dict(api.request_headers.set) == {"x-a": "1"} and dict(api.request_headers.add) == {"x-b": "2"}
    assert api.request_headers.remove == ["x-c"] and api.response_headers.remove == ["server"]
    c = api.cors
    assert [o.exact or o.regex for o in c.allow_origins] == ["https://a.example", ".*\\.b\\.example"]
    assert (c.allow_methods, c.allow_headers, c.expose_headers) == (["GET", "POST"], ["x-h"], ["x-e"])
    assert (c.max_age_s, c.allow_credentials) == (86400, True)
    assert (api.fault.abort_grpc_status, api.fault.abort_percent) == (14, 0.0)  # unset percentage: nothing faulted
    assert api.retry.attempts == 0 and api.retry.retry_on == []
    # destination port explicit; ratings has a single port (9090)
    assert backends(api) == [(f"{REVIEWS}:9090", 30, {}), ("ratings.shop.svc.cluster.local:9090", 70, {})]
    assert dict(api.backends[0].request_headers.set) == {"x-dst": "a"}
    assert (regex.rewrite.uri_regex_pattern, regex.rewrite.uri_regex_substitution) == ("^/r/(.*)$", "/\\1")
    assert regex.retry.attempts == 4
    assert regex.retry.retry_on == ["gateway-error", "retriable-status-codes"]
    assert regex.retry.retriable_status_codes == [503]
    assert (regex.mirror.authority, regex.mirror.percent) == ("ratings.shop.svc.cluster.local:9090", 25.0)


def test_destination_port_defaults():
    multi = service("multi", port=80)
    multi = multi.__class__(metadata=multi.metadata, spec=multi.spec.__class__(
        selector={"app": "multi"}, ports=(*multi.spec.ports, multi.spec.ports[0].__class__(port=81, name="alt"))))
    text = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ports}
spec:
  hosts: [multi]
  http:
  - route:
    - {destination: {host: multi}, weight: 50}
    - {destination: {host: reviews}, weight: 50}
"""
    (route,) = World(text, services=[multi, *svcs("reviews")]).profile("multi:81").routes
    # several ports: the requested one; a single port: that one
    assert [b.authority for b in route.backends] == ["multi.shop.svc.cluster.local:81", f"{REVIEWS}:9080"]


def test_visibility_hosts_gateways_and_merge_order():
    text = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: first, namespace: shop}
spec:
  hosts: [reviews]
  http: [{match: [{uri: {prefix: /a}}], route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  exportTo: ["."]
  http: [{match: [{uri: {prefix: /b}}], route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gw-only, namespace: shop}
spec:
  hosts: [reviews]
  gateways: [istio-system/ingress]
  http: [{match: [{uri: {prefix: /c}}], route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: elsewhere, namespace: other}
spec:
  hosts: ["*.shop.svc.cluster.local"]
  gateways: [mesh, istio-system/ingress]
  http: [{match: [{uri: {prefix: /d}}], route: [{destination: {host: reviews.shop.svc.cluster.local}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: short-elsewhere, namespace: other}
spec:
  hosts: [reviews]
  http: [{match: [{uri: {prefix: /e}}], route: [{destination: {host: reviews}}]}]
"""
    world = World(text, services=svcs("reviews"))

    def prefixes(ns):
        return [r.matches[0].path.prefix for r in world.profile("reviews.shop:9080", ns).routes]

    assert prefixes("shop") == ["/a", "/b", "/d"]   # creation order; gateway-only and other-namespace short name out
    assert prefixes("other") == ["/a", "/d"]        # exportTo "." hides "private"


def test_tcp_and_tls_routes():
    text = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: l4}
spec:
  hosts: [db]
  tcp:
  - match: [{port: 5432, destinationSubnets: [198.19.0.0/16]}]
    route: [{destination: {host: db, port: {number: 5432}}, weight: 100}]
  tls:
  - match: [{sniHosts: ["*.db.example"], port: 443}]
    route: [{destination: {host: db, port: {number: 443}}}]
"""
    p = World(text, services=[service("db", port=5432)]).profile("db:5432")
    (tcp,) = p.tcp_routes
    assert (tcp.matches[0].port, tcp.matches[0].destination_subnets) == (5432, ["198.19.0.0/16"])
    assert [(b.authority, b.weight) for b in tcp.backends] == [("db.shop.svc.cluster.local:5432", 100)]
    (tls,) = p.tls_routes
    assert tls.matches[0].sni_hosts == ["*.db.example"] and tls.backends[0].authority.endswith(":443")
    assert [r.name for r in p.routes] == ["default"]  # no http rules


def test_a_rule_that_cannot_be_translated_is_skipped_and_reported():
    import dataclasses

    world = World(MATCHES + "---\n" + ACTIONS.replace("name: actions", "name: later"), services=svcs("reviews", "ratings"))
    vs = world.rules.all("VirtualService")[0]
    bad_rule = dataclasses.replace(vs.spec.http[0], timeout="soon")
    world.rules.upsert(dataclasses.replace(vs, spec=dataclasses.replace(vs.spec, http=(bad_rule,))))
    built = world.build("reviews:9080")
    reason = "http[0].timeout: 'soon' is not a duration (use e.g. '5s', '250ms', '1m30s')"
    assert built.problems == [("VirtualService/shop/m", reason)]
    assert [r.name for r in built.profile.routes][:1] == ["moved"]  # the other one still applies


def test_mesh_default_retry_policy():
    text = """
apiVersion: meshlet.io/v1alpha1
kind: MeshConfig
metadata: {name: default}
spec:
  defaultHttpRetryPolicy: {attempts: 5, retryOn: "5xx,reset"}
"""
    (route,) = World(text, services=svcs("reviews")).profile("reviews:9080").routes
    assert (route.retry.attempts, route.retry.retry_on) == (5, ["5xx", "reset"])


def test_every_seed_example_translates_without_problems():
    texts = [p.read_text() for p in sorted(SEEDS.glob("*.yaml")) if not p.name.startswith("16-")]
    hosts = ["reviews", "ratings", "httpbin", "myapp", "productpage", "details", "api-service", "backend"]
    world = World("\n---\n".join(texts), namespace="default",
                  services=[service(h, "default", port=9080) for h in hosts])
    for host in hosts:
        built = world.build(f"{host}:9080", "default")
        assert not built.problems and built.profile.routes, host
    entry = world.build("mysql.external.com:3306", "default")
    assert entry.profile.fully_qualified_name == "mysql.external.com" and entry.profile.opaque_protocol


@pytest.mark.parametrize("name, app_protocol, opaque", [
    ("tcp-db", None, True), ("mysql", None, True), ("http", None, False), ("web", "tcp", True), ("tcp", "http", False),
])
def test_opaque_protocol_from_the_service_port(name, app_protocol, opaque):
    import dataclasses

    svc = service("db", port=5432)
    port = dataclasses.replace(svc.spec.ports[0], name=name, app_protocol=app_protocol)
    svc = dataclasses.replace(svc, spec=dataclasses.replace(svc.spec, ports=(port,)))
    assert World(services=[svc]).profile("db:5432").opaque_protocol is opaque
