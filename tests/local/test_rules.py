"""Pure tests: capture rules, Services DNAT, names, IPAM, name files, injection decision."""
from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from meshlet.controller.local import dnat, hosts, names
from meshlet.controller.local.ipam import Ipam, IpamError, IpamFile
from meshlet.injector.decide import InjectionError, decide
from meshlet.proxy.init.iptables import (
    CaptureConfig,
    RuleError,
    nat_table,
    parse_cidrs,
    parse_ports,
)

IP = ipaddress.IPv4Address


def test_capture_rules_exact():
    payload = nat_table(CaptureConfig(exclude_inbound_ports=(22,), exclude_outbound_ports=(5432,),
                                      exclude_outbound_cidrs=(ipaddress.IPv4Network("10.0.0.0/8"),)))
    lines = payload.splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    assert "-A PREROUTING -p tcp -j MESHLET_INBOUND" in lines
    assert "-A OUTPUT -p tcp -j MESHLET_OUTPUT" in lines
    assert "-A MESHLET_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in lines
    assert "-A MESHLET_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in lines
    for port in (15000, 15001, 15006, 15021, 15090, 22):
        assert f"-A MESHLET_INBOUND -p tcp -m tcp --dport {port} -j RETURN" in lines
    out = [l for l in lines if l.startswith("-A MESHLET_OUTPUT")]
    assert out == [
        "-A MESHLET_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1337 -j MESHLET_IN_REDIRECT",
        "-A MESHLET_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
        "-A MESHLET_OUTPUT -m owner --gid-owner 1337 -j RETURN",
        "-A MESHLET_OUTPUT -d 127.0.0.0/8 -j RETURN",
        "-A MESHLET_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN",
        "-A MESHLET_OUTPUT -d 10.0.0.0/8 -j RETURN",
        "-A MESHLET_OUTPUT -p tcp -j MESHLET_REDIRECT",
    ]
    # the catch-all redirect comes after every exception
    inbound = [l for l in lines if l.startswith("-A MESHLET_INBOUND")]
    assert inbound[-1] == "-A MESHLET_INBOUND -p tcp -j MESHLET_IN_REDIRECT"


def test_unmeshed_table_has_only_services():
    payload = nat_table(None, dnat.nat_rules([]))
    assert "MESHLET_OUTPUT" not in payload and "MESHLET_INBOUND" not in payload
    assert "-A OUTPUT -j MESHLET_SERVICES" in payload


def test_services_jump_after_mesh_redirect():
    lines = nat_table(CaptureConfig(), []).splitlines()
    assert lines.index("-A OUTPUT -p tcp -j MESHLET_OUTPUT") < lines.index("-A OUTPUT -j MESHLET_SERVICES")


def test_bad_inputs_are_named():
    with pytest.raises(RuleError, match="'abc'"):
        parse_ports("80,abc")
    with pytest.raises(RuleError, match="70000"):
        CaptureConfig(exclude_outbound_ports=(70000,))
    with pytest.raises(RuleError, match="'10.0.0.0/33'"):
        parse_cidrs("10.0.0.0/33")
    with pytest.raises(RuleError, match="MESHLET_SERVICES"):
        nat_table(None, ["-A OUTPUT -j ACCEPT"])
    assert parse_ports(" 80, 443 ,") == (80, 443)


def test_dnat_probabilities_spread_evenly():
    rule = dnat.ServicePortRule(IP("198.19.0.10"), 80, "tcp",
                                tuple(dnat.Endpoint(IP(f"198.18.0.{i}"), 8080) for i in (4, 2, 3)))
    lines = dnat.nat_rules([rule])
    assert lines == [
        ("-A MESHLET_SERVICES -d 198.19.0.10/32 -p tcp -m tcp --dport 80 -m statistic --mode random "
         "--probability 0.33333333333 -j DNAT --to-destination 198.18.0.2:8080"),
        ("-A MESHLET_SERVICES -d 198.19.0.10/32 -p tcp -m tcp --dport 80 -m statistic --mode random "
         "--probability 0.50000000000 -j DNAT --to-destination 198.18.0.3:8080"),
        "-A MESHLET_SERVICES -d 198.19.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.0.4:8080",
    ]
    # overall probability of each endpoint is 1/n
    p1, p2 = 1 / 3, (1 - 1 / 3) * 0.5
    assert abs(p1 - p2) < 1e-9


def test_dnat_no_endpoints_rejected_in_filter():
    rule = dnat.ServicePortRule(IP("198.19.0.10"), 80, "tcp", ())
    assert dnat.nat_rules([rule]) == []
    assert ("-A MESHLET_SERVICES -d 198.19.0.10/32 -p tcp -m tcp --dport 80 -j REJECT --reject-with tcp-reset"
            in dnat.filter_table([rule]))
    with pytest.raises(ValueError, match="sctp"):
        dnat.ServicePortRule(IP("198.19.0.10"), 80, "sctp", ())


@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_names_fit_kernel_limits(ns, pod):
    n = names.pod_names("mlt-", ns, pod)
    assert len(n.veth) <= 15 and n.veth.startswith("mlt-")
    assert len(n.netns) <= 63 and n.netns.startswith("mlt-")
    assert "/" not in n.netns and " " not in n.netns


def test_names_readable_and_distinct():
    a = names.pod_names("mltt-", "bookinfo", "reviews-v1-abcde")
    assert a.netns == "mltt-bookinfo-reviews-v1-abcde"
    assert a.veth != names.pod_names("mltt-", "bookinfo", "reviews-v1-abcdf").veth
    with pytest.raises(names.KernelNameError, match="prefix"):
        names.pod_names("a-very-long-prefix-", "a", "b")


def test_ipam_skips_gateway_and_never_duplicates(tmp_path):
    cidr = ipaddress.IPv4Network("198.18.200.0/29")
    f = IpamFile(tmp_path / "ipam.json", cidr)
    got = [f.allocate(f"ns/p{i}") for i in range(5)]
    assert IP("198.18.200.1") not in got and len(set(got)) == 5
    assert all(ip in cidr and ip not in (cidr.network_address, cidr.broadcast_address) for ip in got)
    assert f.allocate("ns/p0") == got[0]
    with pytest.raises(IpamError, match="exhausted"):
        f.allocate("ns/p9")
    # restart: the same allocations come back, new ones avoid them
    g = IpamFile(tmp_path / "ipam.json", cidr)
    g.release("ns/p1")
    assert g.allocate("ns/new") == got[1]
    assert g.allocate("ns/p2") == got[2]


def test_ipam_prefers_unused_addresses():
    ipam = Ipam(ipaddress.IPv4Network("198.18.0.0/24"))
    a = ipam.allocate("a")
    ipam.release("a")
    assert ipam.allocate("b") != a


def test_hosts_file():
    text = hosts.render_hosts(pod="web-abcde", namespace="demo", pod_ip=IP("198.18.0.5"), services=[
        hosts.ServiceName("web", "demo", IP("198.19.0.7")),
        hosts.ServiceName("db", "other", IP("198.19.0.9")),
    ])
    lines = text.splitlines()
    assert "198.18.0.5\tweb-abcde" in lines
    assert "198.19.0.7\tweb.demo.svc.cluster.local web.demo web" in lines
    assert "198.19.0.9\tdb.other.svc.cluster.local db.other" in lines
    assert "127.0.0.1\tlocalhost" in lines
    assert "search demo.svc.cluster.local" in hosts.render_resolv_conf("demo")


@pytest.mark.parametrize("ns, labels, annotations, expected", [
    ({}, {}, {}, False),
    ({"istio-injection": "enabled"}, {}, {}, True),
    ({"meshlet.io/inject": "enabled"}, {}, {}, True),
    ({"istio-injection": "enabled"}, {"sidecar.istio.io/inject": "false"}, {}, False),
    ({"istio-injection": "enabled"}, {}, {"meshlet.io/inject": "false"}, False),
    ({}, {"sidecar.istio.io/inject": "true"}, {}, True),
    ({}, {}, {"sidecar.istio.io/inject": "true"}, True),
    ({"istio-injection": "disabled"}, {"sidecar.istio.io/inject": "true"}, {}, False),
    # label beats annotation
    ({}, {"meshlet.io/inject": "false"}, {"sidecar.istio.io/inject": "true"}, False),
])
def test_injection_decision(ns, labels, annotations, expected):
    assert decide(ns, labels, annotations).inject is expected


def test_injection_bad_value_named():
    with pytest.raises(InjectionError, match="yes"):
        decide({}, {"sidecar.istio.io/inject": "yes"}, {})
    with pytest.raises(InjectionError, match="istio-injection"):
        decide({"istio-injection": "on"}, {}, {})
