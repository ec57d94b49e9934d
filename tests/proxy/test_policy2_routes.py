"""Route-level policy additions (pure / in-memory router): redirect derivePort, http2Error
fault aborts (compiled; HTTP/2 streams reset), consistent-hash cookies generated with a ttl."""
from __future__ import annotations

import h2.events
import pytest
from meshlet.api import destination_pb as pb
from meshlet.destination import vs_routes
from meshlet.destination.errors import InvalidRule
from meshlet.proxy import routes as R
from meshlet.proxy.exchange import Reply, Route
from meshlet.proxy.hashkey import cookie_value, sticky_cookie
from meshlet.proxy.profile import Fault, ProfileError
from meshlet.proxy.routes import response_head_ops
from test_fast_path import CTX, WEB, compiled, head, make_router
from test_h2_unit import Mesh


def _redirect(derive: int, host: bytes = b"web.demo:8080", port: int = 8080) -> bytes:
    rd = compiled([pb.Route(name="r", redirect=pb.Redirect(uri="/new", scheme="https",
                                                           derive_port=pb.DerivePort(derive)))]).routes[0].redirect
    assert rd is not None and rd.derive == derive
    raw = b"GET /old HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
    return R.redirect(rd, R.RequestView(head(raw), host.decode(), port, frozenset()), None, False)


def test_redirect_derive_port() -> None:
    assert b"location: https://web.demo:8080/new\r\n" in _redirect(0)  # the Host as it came
    assert b"location: https://web.demo/new\r\n" in _redirect(1)  # FROM_PROTOCOL_DEFAULT: no port
    assert b"location: https://web.demo:9090/new\r\n" in _redirect(2, b"web.demo", 9090)  # FROM_REQUEST_PORT


class _Obj:
    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


def test_destination_translates_derive_port_and_http2_error() -> None:
    rd = vs_routes.redirect(_Obj(uri="/n", derive_port="FROM_REQUEST_PORT"), "spec.http[0].redirect")
    assert rd is not None and rd.derive_port == pb.DerivePort.FROM_REQUEST_PORT
    with pytest.raises(InvalidRule, match="derivePort"):
        vs_routes.redirect(_Obj(derive_port="SOMEWHERE"), "spec.http[0].redirect")
    f = vs_routes.fault(_Obj(abort=_Obj(http2_error="refused_stream", percentage=_Obj(value=100.0))),
                        "spec.http[0].fault")
    assert f is not None and f.abort_http2_error == "REFUSED_STREAM" and f.abort_percent == 100.0
    with pytest.raises(InvalidRule, match="http2Error"):
        vs_routes.fault(_Obj(abort=_Obj(http2_error="NOPE", percentage=_Obj(value=100.0))), "spec.http[0].fault")


def test_http2_error_fault_compiles_to_its_code() -> None:
    r = compiled([pb.Route(name="r", backends=[pb.WeightedDst(authority=WEB, weight=1)],
                           fault=pb.Fault(abort_grpc_status=-1, abort_http2_error="REFUSED_STREAM",
                                          abort_percent=100.0))]).routes[0]
    assert r.fault == Fault(abort_percent=100.0, abort_h2=7)
    with pytest.raises(ProfileError, match="abort_http2_error"):
        compiled([pb.Route(name="r", backends=[pb.WeightedDst(authority=WEB, weight=1)],
                           fault=pb.Fault(abort_grpc_status=-1, abort_http2_error="BAD", abort_percent=1.0))])


async def test_http2_error_abort_resets_the_stream_and_http1_is_not_aborted() -> None:
    prof = compiled([pb.Route(name="r", backends=[pb.WeightedDst(authority=WEB, weight=1)],
                              fault=pb.Fault(abort_grpc_status=-1, abort_http2_error="REFUSED_STREAM",
                                             abort_percent=100.0))])
    router = make_router(prof)
    got = router.route_http1(head(), CTX)
    assert isinstance(got, Route)  # HTTP/1: nothing to reset, forwarded
    m = Mesh()
    m.router = m.srv.router = router
    sid = m.request([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", WEB.encode())])
    m.pump()
    reset = m.got(sid, h2.events.StreamReset)
    assert reset and reset[0].error_code == 7 and not m.got(sid, h2.events.ResponseReceived)
    assert not m.app_events or not any(isinstance(e, h2.events.RequestReceived) for e in m.app_events)


def _sticky(ttl_ms: int = 60_000, path: str = "/") -> object:
    return compiled([pb.Route(name="r", backends=[pb.WeightedDst(authority=WEB, weight=1)])],
                    traffic_policy=pb.TrafficPolicy(load_balancer=pb.LoadBalancer(
                        policy=pb.LoadBalancerPolicy.CONSISTENT_HASH,
                        consistent_hash=pb.ConsistentHash(http_cookie_name="user", cookie_ttl_ms=ttl_ms,
                                                          cookie_path=path))))


def test_a_request_without_the_cookie_gets_one_and_keeps_its_endpoint() -> None:
    router = make_router(_sticky(), endpoints=4)
    first = router.route_now(head(), CTX)
    assert isinstance(first, Route) and first.plan is not None
    ops = first.plan.resp_ops
    assert len(ops) == 1 and ops[0].add[0][0] == b"set-cookie"
    cookie = ops[0].add[0][1].decode()
    assert cookie.endswith("; Max-Age=60; Path=/; HttpOnly") and cookie.startswith("user=")
    value = cookie.split(";")[0].split("=", 1)[1]
    resp = response_head_ops(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", ops)
    assert f"set-cookie: {cookie}\r\n".encode() in resp
    # the next requests carry it: the same endpoint each time, no new cookie
    with_cookie = head(b"GET /x HTTP/1.1\r\nHost: " + WEB.encode() + b"\r\nCookie: a=1; user=" + value.encode()
                       + b"\r\n\r\n")
    addrs = set()
    for _ in range(10):
        r = router.route_now(with_cookie, CTX)
        assert isinstance(r, Route) and r.plan is not None and not r.plan.resp_ops
        addrs.add(r.plan.addr)
    assert addrs == {first.plan.addr}


def test_without_a_ttl_no_cookie_is_made() -> None:
    router = make_router(_sticky(ttl_ms=0), endpoints=2)
    r = router.route_now(head(), CTX)
    assert isinstance(r, Route) and r.plan is not None and r.plan.resp_ops == () and r.plan.hash_key is None
    assert not isinstance(r, Reply)


def test_cookie_helpers() -> None:
    assert cookie_value([(b"Cookie", b"a=1; user=abc"), (b"x", b"y")], "user") == b"abc"
    assert cookie_value([(b"cookie", b"users=1")], "user") is None
    assert sticky_cookie("u", "v", 0.5, "") == (b"set-cookie", b"u=v; Max-Age=1; HttpOnly")
