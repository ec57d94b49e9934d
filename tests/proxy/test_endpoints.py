from meshlet.api import destination_pb as pb
from meshlet.proxy.endpoints import Add, Endpoint, EndpointState, Kind, NoEndpointsUpdate, Remove
from meshlet.proxy.resolve import from_proto, normalize_authority

A = Endpoint("10.0.0.1", 80, identity="spiffe://cluster.local/ns/x/sa/a")
B = Endpoint("10.0.0.2", 80)


def test_snapshot_then_diffs() -> None:
    s = EndpointState()
    assert s.kind is Kind.UNKNOWN
    s.apply(Add((A,), (("dst_service", "web"),)), 0.0, snapshot=True)
    assert s.kind is Kind.ENDPOINTS and set(s.endpoints) == {A.addr}
    assert dict(s.labels) == {"dst_service": "web"}
    s.apply(Add((B,)), 1.0)
    assert set(s.endpoints) == {A.addr, B.addr}
    assert dict(s.labels) == {"dst_service": "web"}  # a diff without labels keeps them
    s.apply(Remove((A.addr,)), 2.0)
    assert [b.endpoint for b in s.balanced()] == [B]
    s.apply(Remove((B.addr,)), 3.0)
    assert s.kind is Kind.EMPTY


def test_duplicates_and_unknown_removes_are_tolerated() -> None:
    s = EndpointState()
    s.apply(Add((A, A)), 0.0, snapshot=True)
    s.apply(Add((A,)), 0.0)
    s.apply(Remove((("1.2.3.4", 1),)), 0.0)
    assert len(s.endpoints) == 1


def test_new_snapshot_replaces_but_keeps_latency() -> None:
    s = EndpointState()
    s.apply(Add((A, B)), 0.0, snapshot=True)
    s.endpoints[A.addr].load.observe(0.5, 0.0)
    s.apply(Add((A,)), 1.0, snapshot=True)  # reconnected stream: B is gone
    assert set(s.endpoints) == {A.addr}
    assert s.endpoints[A.addr].load.estimate == 0.5


def test_no_endpoints() -> None:
    s = EndpointState()
    s.apply(Add((A,)), 0.0, snapshot=True)
    s.apply(NoEndpointsUpdate(exists=True), 0.0)
    assert s.kind is Kind.EMPTY and not s.endpoints
    s.apply(NoEndpointsUpdate(exists=False), 0.0)
    assert s.kind is Kind.PASSTHROUGH
    s.apply(Add((B,)), 0.0)
    assert s.kind is Kind.ENDPOINTS


def test_balanced_list_is_cached_until_change() -> None:
    s = EndpointState()
    s.apply(Add((A, B)), 0.0, snapshot=True)
    first = s.balanced()
    assert s.balanced() is first
    s.apply(Remove((A.addr,)), 0.0)
    assert s.balanced() is not first


def test_from_proto() -> None:
    msg = pb.Update(add=pb.WeightedAddrSet(
        metric_labels={"dst_service": "web"},
        addrs=[pb.WeightedAddr(addr=pb.TcpAddress(ip="10.0.0.1", port=80), weight=3,
                               tls_identity=pb.TlsIdentity(uri="spiffe://x/ns/a/sa/b", server_name="b.a")),
               pb.WeightedAddr(addr=pb.TcpAddress(ip="10.0.0.2", port=0))]))  # invalid port: dropped
    update = from_proto(msg)
    assert isinstance(update, Add)
    assert update.endpoints == (Endpoint("10.0.0.1", 80, 3, "spiffe://x/ns/a/sa/b", "b.a", (), "UNKNOWN"),)
    assert update.labels == (("dst_service", "web"),)
    assert from_proto(pb.Update(remove=pb.AddrSet(addrs=[pb.TcpAddress(ip="1.1.1.1", port=2)]))) == \
        Remove((("1.1.1.1", 2),))
    assert from_proto(pb.Update(no_endpoints=pb.NoEndpoints(exists=True))) == NoEndpointsUpdate(True)
    assert from_proto(pb.Update()) is None


def test_normalize_authority() -> None:
    assert normalize_authority(b"Web.Default:8080", 80) == "web.default:8080"
    assert normalize_authority(b"web", 8080) == "web:8080"
    assert normalize_authority("10.0.0.1", 80) == "10.0.0.1:80"
    assert normalize_authority(b"[::1]", 80) == "[::1]:80"
    assert normalize_authority(b"[::1]:9", 80) == "[::1]:9"
    assert normalize_authority(b"", 80) == ""
