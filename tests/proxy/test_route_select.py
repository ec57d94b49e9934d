"""Route selection, matchers, weighted choice and request/response building (pure)."""
from __future__ import annotations

import random

import pytest

from meshlet.api import destination_pb as pb
from meshlet.proxy.http1 import RequestParser, RequestHead
from meshlet.proxy.profile import ProfileError, compile_profile
from meshlet.proxy import routes as R


def head(raw: bytes) -> RequestHead:
    ev = RequestParser().feed(raw)
    assert isinstance(ev[0], RequestHead)
    return ev[0]


def prof(d: dict, labels: dict | None = None, ns: str = "demo"):  # noqa: ANN201
    return compile_profile(pb.DestinationProfile.from_dict(d), labels or {}, ns)


def view(p, raw: bytes, authority: str = "reviews:9080", port: int = 9080) -> R.RequestView:  # noqa: ANN001
    return R.RequestView(head(raw), authority, port, p.header_names)


def pick(p, raw: bytes, **kw):  # noqa: ANN001, ANN201
    got = R.select(p, view(p, raw, **kw))
    return None if got is None else got[0].name


BACKEND = [{"authority": "reviews:9080"}]


def test_first_match_wins_on_path_headers_method_and_query() -> None:
    p = prof({"routes": [
        {"name": "jason", "matches": [{"headers": [{"name": "end-user", "value": {"exact": "jason"}}]}],
         "backends": BACKEND},
        {"name": "api", "matches": [{"path": {"prefix": "/api"}, "method": {"exact": "POST"}}], "backends": BACKEND},
        {"name": "re", "matches": [{"path": {"regex": "/r/[0-9]+"}}], "backends": BACKEND},
        {"name": "q", "matches": [{"queryParams": [{"name": "v", "value": {"exact": "2"}}]}], "backends": BACKEND},
        {"name": "ci", "matches": [{"path": {"exact": "/CASE", "ignoreCase": True}}], "backends": BACKEND},
    ]})
    assert pick(p, b"GET / HTTP/1.1\r\nHost: x\r\nEnd-User: jason\r\n\r\n") == "jason"
    assert pick(p, b"GET / HTTP/1.1\r\nHost: x\r\nEnd-User: bob\r\n\r\n") is None
    assert pick(p, b"POST /api/x HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n") == "api"
    assert pick(p, b"GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n") is None
    assert pick(p, b"GET /r/12 HTTP/1.1\r\nHost: x\r\n\r\n") == "re"
    assert pick(p, b"GET /r/12x HTTP/1.1\r\nHost: x\r\n\r\n") is None
    assert pick(p, b"GET /x?a=1&v=2 HTTP/1.1\r\nHost: x\r\n\r\n") == "q"
    assert pick(p, b"GET /case HTTP/1.1\r\nHost: x\r\n\r\n") == "ci"
    assert p.routed


def test_without_headers_present_and_cookie_regex() -> None:
    p = prof({"routes": [
        {"name": "no-canary", "matches": [{"headers": [{"name": "x-canary", "invert": True}],
                                           "path": {"prefix": "/a"}}], "backends": BACKEND},
        {"name": "cookie", "matches": [{"headers": [{"name": "cookie",
                                                     "value": {"regex": "^(.*?;)?(user=jason)(;.*)?$"}}]}],
         "backends": BACKEND},
        {"name": "present", "matches": [{"headers": [{"name": "x-canary"}]}], "backends": BACKEND},
    ]})
    assert pick(p, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n") == "no-canary"
    assert pick(p, b"GET /a HTTP/1.1\r\nHost: x\r\nx-canary: 1\r\n\r\n") == "present"
    assert pick(p, b"GET / HTTP/1.1\r\nHost: x\r\nCookie: a=b;user=jason\r\n\r\n") == "cookie"


def test_source_labels_namespace_and_port_are_decided_per_proxy() -> None:
    d = {"routes": [
        {"name": "v2-callers", "matches": [{"sourceLabels": {"app": "productpage", "version": "v2"}}],
         "backends": BACKEND},
        {"name": "other-ns", "matches": [{"sourceNamespace": "other"}], "backends": BACKEND},
        {"name": "port", "matches": [{"port": 9080}], "backends": BACKEND},
    ]}
    raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert pick(prof(d, {"app": "productpage", "version": "v2"}), raw) == "v2-callers"
    p = prof(d, {"app": "productpage", "version": "v1"})
    assert [r.name for r in p.routes] == ["port"]
    assert pick(p, raw) == "port" and pick(p, raw, port=8080) is None
    assert pick(prof(d, {}, ns="other"), raw) == "other-ns"
    # routes exist but none is for this caller: everything gets 404
    only = prof({"routes": [d["routes"][0]]}, {"app": "x"})
    assert only.routed and pick(only, raw) is None


def test_empty_profile_routes_to_the_target() -> None:
    p = prof({})
    assert not p.routed and R.select(p, view(p, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")) is None


def test_bad_regex_names_the_field() -> None:
    with pytest.raises(ProfileError, match=r"routes\[0\]\.matches\[0\]\.path\.regex"):
        prof({"routes": [{"matches": [{"path": {"regex": "(["}}], "backends": BACKEND}]})


def test_weighted_choice_distribution() -> None:
    p = prof({"routes": [{"backends": [{"authority": "a:80", "weight": 80}, {"authority": "b:80", "weight": 20},
                                       {"authority": "c:80", "weight": 0}]}]})
    route = p.routes[0]
    rng = random.Random(7)
    counts = {"a:80": 0, "b:80": 0, "c:80": 0}
    for _ in range(10000):
        counts[R.choose_backend(route, rng.random()).authority] += 1
    assert 7700 < counts["a:80"] < 8300 and counts["c:80"] == 0
    assert R.choose_backend(route, 0.0).authority == "a:80"
    assert R.choose_backend(route, 0.9999).authority == "b:80"


def test_rewrite_prefix_regex_authority_and_header_ops() -> None:
    p = prof({"routes": [
        {"name": "rw", "matches": [{"path": {"prefix": "/old"}}], "rewrite": {"uri": "/new", "authority": "svc.x"},
         "requestHeaders": {"set": {"X-Set": "1"}, "add": {"x-add": "2"}, "remove": ["x-drop"]},
         "backends": [{"authority": "a:80", "requestHeaders": {"set": {"x-backend": "b"}}}]},
        {"name": "re", "matches": [{"path": {"prefix": "/re"}}],
         "rewrite": {"uriRegexPattern": "^/re/([a-z]+)/(\\d+)$", "uriRegexSubstitution": "/\\2/\\1"},
         "backends": BACKEND},
    ]})
    v = view(p, b"GET /old/path?q=1 HTTP/1.1\r\nHost: x\r\nX-Drop: y\r\nX-Set: 0\r\n\r\n")
    route, m = R.select(p, v)
    up = R.upstream_head(v.head, route, m, route.backends[0], v)
    assert up.target == b"/new/path?q=1" and up.host == b"svc.x"
    names = [(n.lower(), val) for n, val in up.headers]
    assert (b"host", b"svc.x") in names and (b"x-set", b"1") in names and (b"x-add", b"2") in names
    assert (b"x-backend", b"b") in names and not any(n == b"x-drop" for n, _ in names)
    assert (b"x-set", b"0") not in names
    v = view(p, b"GET /re/abc/42 HTTP/1.1\r\nHost: x\r\n\r\n")
    route, m = R.select(p, v)
    assert R.upstream_head(v.head, route, m, None, v).target == b"/42/abc"


def test_response_ops_redirect_direct_abort_and_not_found() -> None:
    raw = b"HTTP/1.1 200 OK\r\nServer: app\r\nX-Internal: 1\r\ncontent-length: 0\r\n\r\n"
    p = prof({"routes": [{"responseHeaders": {"set": {"server": "mesh"}, "remove": ["x-internal"]},
                          "backends": BACKEND}]})
    out = R.response_head_ops(raw, (p.routes[0].response_ops,))
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\n")
    assert b"server: mesh" in out and b"X-Internal" not in out and b"Server: app" not in out
    p = prof({"routes": [{"matches": [{"path": {"prefix": "/v1"}}], "redirect": {"uri": "/v2", "authority": "new"}}]})
    v = view(p, b"GET /v1/x HTTP/1.1\r\nHost: old\r\n\r\n")
    route, m = R.select(p, v)
    resp = R.redirect(route.redirect, v, m, close=False)
    assert resp.startswith(b"HTTP/1.1 301 ") and b"location: http://new/v2/x\r\n" in resp
    assert R.not_found(False).startswith(b"HTTP/1.1 404 ") and b"meshlet-proxy-error: no route" in R.not_found(False)
    assert R.abort(418, True).startswith(b"HTTP/1.1 418 ") and b"connection: close" in R.abort(418, True)
    p = prof({"routes": [{"directResponse": {"status": 503, "body": "ZG93bg=="}}]})
    assert p.routes[0].direct.status == 503 and p.routes[0].direct.body == b"down"


def test_cors_preflight_and_actual_requests() -> None:
    p = prof({"routes": [{"cors": {"allowOrigins": [{"exact": "https://ok.example"}], "allowMethods": ["GET", "POST"],
                                   "allowHeaders": ["x-a"], "maxAgeS": 60, "allowCredentials": True},
                          "backends": BACKEND}]})
    cors = p.routes[0].cors
    pre = view(p, b"OPTIONS / HTTP/1.1\r\nHost: x\r\nOrigin: https://ok.example\r\n"
                  b"Access-Control-Request-Method: POST\r\n\r\n")
    out = R.cors_preflight(cors, pre, close=False)
    assert out is not None and out.startswith(b"HTTP/1.1 200 ")
    assert b"access-control-allow-origin: https://ok.example" in out and b"access-control-max-age: 60" in out
    bad = view(p, b"OPTIONS / HTTP/1.1\r\nHost: x\r\nOrigin: https://evil\r\nAccess-Control-Request-Method: GET\r\n\r\n")
    assert R.cors_preflight(cors, bad, close=False) is None
    actual = view(p, b"GET / HTTP/1.1\r\nHost: x\r\nOrigin: https://ok.example\r\n\r\n")
    assert R.cors_preflight(cors, actual, close=False) is None
    ops = R.cors_response_ops(cors, R.cors_origin(cors, actual))
    out = R.response_head_ops(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", (ops,))
    assert b"access-control-allow-origin: https://ok.example" in out


def test_faults_unset_or_zero_percent_do_nothing_and_policies_merge() -> None:
    p = prof({"routes": [{"fault": {"abortHttpStatus": 500}, "backends": BACKEND},
                         {"fault": {"delayMs": 100, "delayPercent": 50}, "backends": BACKEND}],
              "trafficPolicy": {"loadBalancer": {"policy": "LOAD_BALANCER_POLICY_ROUND_ROBIN"},
                                "connectionPool": {"maxConnections": 5}},
              "subsets": [{"name": "v2", "labels": {"version": "v2"},
                           "trafficPolicy": {"loadBalancer": {"policy": "LOAD_BALANCER_POLICY_RANDOM"}}}]})
    assert p.routes[0].fault is None and p.routes[1].fault.delay == 0.1
    from meshlet.proxy.profile import LbPolicy

    assert p.policy_for("v1").lb is LbPolicy.ROUND_ROBIN
    assert p.policy_for("v2").lb is LbPolicy.RANDOM and p.policy_for("v2").max_connections == 5
    assert p.subset_labels("v2") == (("version", "v2"),)


def test_split_draws_keep_shares_close_to_the_weights() -> None:
    from meshlet.proxy.config import ProxyConfig
    from meshlet.proxy.metrics import ProxyMetrics
    from meshlet.proxy.routing import OutboundRouter

    p = prof({"routes": [{"backends": [{"authority": "a:80", "weight": 80}, {"authority": "b:80", "weight": 20}]},
                         {"backends": [{"authority": "a:80", "weight": 50}, {"authority": "b:80", "weight": 50}]}]})
    router = OutboundRouter(ProxyConfig(), None, None, ProxyMetrics("ns", "pod"), rng=random.Random(3))  # type: ignore
    for route, share in ((p.routes[0], 400), (p.routes[1], 250)):
        counts = {"a:80": 0, "b:80": 0}
        for _ in range(500):
            counts[R.choose_backend(route, router._split_draw(route)).authority] += 1  # noqa: SLF001
        assert abs(counts["a:80"] - share) <= 3, counts
