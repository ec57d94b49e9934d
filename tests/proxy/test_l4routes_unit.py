"""Pure: the ClientHello SNI parser (real hellos from Python's ssl) and tcp/tls route matching."""
from __future__ import annotations

import random
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshlet.api import destination_pb as pb
from meshlet.proxy.l4routes import NO_L4, compile_l4, sni_matches
from meshlet.proxy.profile import ProfileError, compile_profile, describe
from meshlet.proxy.tlssni import NeedMore, SniError, parse_sni


def client_hello(sni: str | None) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_sni_of_real_hello() -> None:
    assert parse_sni(client_hello("api.example.com")) == "api.example.com"
    assert parse_sni(client_hello("Mixed.Example.")) == "mixed.example"


def test_hello_without_sni() -> None:
    assert parse_sni(client_hello(None)) == ""


def test_every_truncation_asks_for_more() -> None:
    hello = client_hello("api.example.com")
    for n in range(len(hello)):
        with pytest.raises(NeedMore):
            parse_sni(hello[:n])


def test_not_tls() -> None:
    for buf in (b"GET / HTTP/1.1\r\n", b"\x16\x09\x00\x00\x01x", b"\x17\x03\x03\x00\x01x"):
        with pytest.raises(SniError):
            parse_sni(buf)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=400))
def test_garbage_only_raises_parse_errors(junk: bytes, cut: int) -> None:
    hello = client_hello("x.example")
    for buf in (junk, b"\x16\x03\x01" + junk, hello[:cut] + junk, bytes(b ^ 0x5A for b in hello[:cut])):
        try:
            parse_sni(buf)
        except SniError:
            pass


def test_corrupted_real_hello_only_raises_parse_errors() -> None:
    hello = client_hello("api.example.com")
    rng = random.Random(1)
    for _ in range(2000):
        b = bytearray(hello)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(5, len(b))] = rng.randrange(256)
        try:
            parse_sni(bytes(b))
        except SniError:
            pass


def test_sni_wildcards() -> None:
    assert sni_matches("a.example", "a.example")
    assert sni_matches("*.example", "a.example")
    assert sni_matches("*.example", "b.a.example")
    assert not sni_matches("*.example", "example")
    assert not sni_matches("a.example", "b.example")
    assert sni_matches("*", "anything")


def _prof(**kw: object) -> pb.DestinationProfile:
    return pb.DestinationProfile.from_dict(kw)


def test_tcp_route_matching() -> None:
    m = _prof(tcpRoutes=[
        {"matches": [{"port": 5432, "destinationSubnets": ["10.0.0.0/8"]}], "backends": [{"authority": "a:5432"}]},
        {"matches": [{"sourceLabels": {"app": "other"}}], "backends": [{"authority": "never:1"}]},
        {"backends": [{"authority": "b:1", "weight": 80}, {"authority": "c:1", "weight": 20}]}])
    l4 = compile_l4(m, {"app": "me"})
    assert len(l4.tcp) == 2  # the other pod's route is dropped at compile time
    assert l4.select("10.1.2.3", 5432, None).backends[0].authority == "a:5432"
    r = l4.select("192.168.0.1", 5432, None)
    assert [b.authority for b in r.backends] == ["b:1", "c:1"]
    rng = random.Random(7)
    picks = [r.pick(rng).authority for _ in range(1000)]
    assert 650 < picks.count("b:1") < 950
    assert compile_l4(m, {"app": "other"}).select("1.1.1.1", 1, None).backends[0].authority == "never:1"


def test_tls_route_matching_falls_back_to_tcp() -> None:
    m = _prof(tlsRoutes=[{"matches": [{"port": 443, "sniHosts": ["*.shop.example"]}],
                          "backends": [{"authority": "shop:443"}]}],
              tcpRoutes=[{"backends": [{"authority": "any:443"}]}])
    l4 = compile_l4(m, {})
    assert l4.select("1.2.3.4", 443, "cart.shop.example").backends[0].authority == "shop:443"
    assert l4.select("1.2.3.4", 8443, "cart.shop.example").backends[0].authority == "any:443"
    assert l4.select("1.2.3.4", 443, "other.example").backends[0].authority == "any:443"
    assert l4.select("1.2.3.4", 443, None).backends[0].authority == "any:443"


def test_no_routes_and_bad_routes() -> None:
    assert compile_l4(_prof(), {}) is NO_L4
    assert compile_profile(_prof(), {}, "ns").l4 is NO_L4
    with pytest.raises(ProfileError, match="bad subnet"):
        compile_profile(_prof(tcpRoutes=[{"matches": [{"destinationSubnets": ["nope"]}],
                                          "backends": [{"authority": "a:1"}]}]), {}, "ns")
    with pytest.raises(ProfileError, match="no backend"):
        compile_profile(_prof(tcpRoutes=[{"backends": []}]), {}, "ns")


def test_describe_is_json() -> None:
    import json

    m = _prof(tcpRoutes=[{"matches": [{"port": 1, "destinationSubnets": ["10.0.0.0/8"]}],
                          "backends": [{"authority": "a:1"}]}],
              tlsRoutes=[{"matches": [{"sniHosts": ["*.x"]}], "backends": [{"authority": "b:1"}]}])
    d = json.loads(json.dumps(describe(compile_profile(m, {}, "ns"))))
    assert d["tcp_routes"][0]["matches"][0]["destination_subnets"] == ["10.0.0.0/8"]
    assert d["tls_routes"][0]["matches"][0]["sni_hosts"] == ["*.x"]
    assert "tcp_routes" not in describe(compile_profile(_prof(), {}, "ns"))
