"""Gateway API HTTPRoute attached to a Service -> profile routes (pure)."""
import pytest

pytest.importorskip("meshlet.controller.model.gateway_api")

from dst_helpers import service
from dst_profile_helpers import World, backends

ECHO = "echo.shop.svc.cluster.local"

ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - backendRefs:
    - {name: echo-v1, port: 80, weight: 70}
    - {name: echo-v2, port: 80, weight: 30}
  - matches:
    - path: {type: PathPrefix, value: /v2}
      headers: [{name: X-Version, value: "2"}]
      queryParams: [{name: Debug, value: "1", type: RegularExpression}]
      method: GET
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-A, value: "1"}], add: [{name: x-b, value: "2"}], remove: [x-c]}
    - type: URLRewrite
      urlRewrite: {hostname: echo-v2, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs:
    - name: echo-v2
      port: 80
      filters:
      - type: ResponseHeaderModifier
        responseHeaderModifier: {set: [{name: x-from, value: v2}]}
    timeouts: {request: 2s, backendRequest: 500ms}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: moves}
spec:
  parentRefs: [{kind: Service, name: echo}]
  rules:
  - matches: [{path: {type: Exact, value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: new.example, port: 8080, scheme: https}}]
  - matches: [{path: {type: PathPrefix, value: /v2/long}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: echo-v1, port: 80}, percent: 10}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /broken}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other-parent}
spec:
  parentRefs: [{kind: Service, name: echo-v1}]
  rules: [{backendRefs: [{name: echo-v2, port: 80}]}]
"""


def world():
    return World(ROUTES, services=[service("echo"), service("echo-v1"), service("echo-v2")])


def test_routes_are_ordered_by_gateway_api_precedence():
    routes = world().profile("echo:80").routes
    paths = [(r.matches[0].path.exact or r.matches[0].path.prefix) for r in routes]
    # Exact first, then the longest prefix, then methods/headers, the catch-all "/" last
    assert paths == ["/old", "/v2/long", "/broken", "/v2", "/"]
    assert [r.name for r in routes] == ["moves.0", "moves.1", "moves.2", "split.1", "split.0"]


def test_rule_translation():
    routes = {r.name: r for r in world().profile("echo:80").routes}
    split = routes["split.0"]
    assert backends(split) == [("echo-v1.shop.svc.cluster.local:80", 70, {}), ("echo-v2.shop.svc.cluster.local:80", 30, {})]
    assert split.retry.attempts == 2 and split.timeout_ms == 0
    v2 = routes["split.1"]
    (m,) = v2.matches
    assert [(h.name, h.value.exact) for h in m.headers] == [("x-version", "2")]
    assert [(q.name, q.value.regex) for q in m.query_params] == [("Debug", "1")]
    assert m.method.exact == "GET"
    assert dict(v2.request_headers.set) == {"x-a": "1"} and v2.request_headers.remove == ["x-c"]
    assert (v2.rewrite.authority, v2.rewrite.uri) == ("echo-v2", "/")
    assert dict(v2.backends[0].response_headers.set) == {"x-from": "v2"} and v2.backends[0].weight == 1
    assert (v2.timeout_ms, v2.retry.per_try_timeout_ms) == (2000, 500)
    redirect = routes["moves.0"].redirect
    assert (redirect.authority, redirect.port, redirect.scheme, redirect.response_code) == ("new.example", 8080, "https", 302)
    assert routes["moves.0"].backends == []
    mirror = routes["moves.1"].mirror
    assert (mirror.authority, mirror.percent) == ("echo-v1.shop.svc.cluster.local:80", 10.0)
    assert routes["moves.2"].direct_response.status == 500  # no backend: 500 as the spec says


def test_routes_attach_only_to_their_parent_and_a_virtual_service_wins():
    w = world()
    assert [r.name for r in w.profile("echo-v1:80").routes] == ["other-parent.0"]
    assert [r.name for r in w.profile("echo-v2:80").routes] == ["default"]
    vs = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [echo]
  http: [{route: [{destination: {host: echo-v2}}]}]
"""
    both = World(ROUTES + "---\n" + vs, services=[service("echo"), service("echo-v1"), service("echo-v2")])
    assert [r.name for r in both.profile("echo:80").routes] == ["vs.0"]
