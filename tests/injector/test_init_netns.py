"""The injected meshlet-init container's command, run for real in a fresh network namespace:
`python -m meshlet.proxy.init <the patch's arguments>` installs local mode's capture rules."""
from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from meshlet.injector.config import InjectorConfig
from meshlet.injector.patch import plan
from meshlet.proxy.init.iptables import CaptureConfig, mesh_chain_rules, parse_cidrs

pytestmark = pytest.mark.root


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)


@pytest.fixture
def netns():
    name = f"mlti-{uuid.uuid4().hex[:8]}"
    sh("ip", "netns", "add", name).check_returncode()
    try:
        yield name
    finally:
        sh("ip", "netns", "del", name)


def init_command(annotations: dict[str, str]) -> list[str]:
    p = plan({"metadata": {"annotations": annotations}, "spec": {"containers": [{"name": "a", "image": "b"}]}},
             InjectorConfig(proxy_image="img"))
    cmd = p.init["command"]
    assert cmd[:3] == ["python", "-m", "meshlet.proxy.init"]
    return [sys.executable, *cmd[1:]]


def nat_rules(netns: str) -> list[str]:
    out = sh("ip", "netns", "exec", netns, "iptables-save", "-t", "nat")
    out.check_returncode()
    return [line for line in out.stdout.splitlines() if line.startswith("-A ")]


def by_chain(rules: list[str]) -> dict[str, list[str]]:
    """Rules grouped per chain in their order (iptables-save lists chains in its own order)."""
    out: dict[str, list[str]] = {}
    for r in rules:
        if r.startswith("-A MESHLET_"):
            out.setdefault(r.split()[1], []).append(r)
    return out


def test_default_injection_writes_local_modes_rules(netns):
    proc = sh("ip", "netns", "exec", netns, *init_command({}))
    assert proc.returncode == 0, proc.stderr
    rules = nat_rules(netns)
    assert "-A PREROUTING -p tcp -j MESHLET_INBOUND" in rules
    assert "-A OUTPUT -p tcp -j MESHLET_OUTPUT" in rules
    assert "-A MESHLET_OUTPUT -m owner --gid-owner 1337 -j RETURN" in rules
    assert "-A MESHLET_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in rules
    assert "-A MESHLET_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in rules
    for port in (15001, 15006, 15000, 15090, 15021):
        assert f"-A MESHLET_INBOUND -p tcp -m tcp --dport {port} -j RETURN" in rules
    # exactly the rules the local runtime renders for a meshed pod
    assert by_chain(rules) == by_chain(mesh_chain_rules(CaptureConfig()))


def test_override_annotations_reach_the_rules(netns):
    cmd = init_command({
        "traffic.sidecar.istio.io/excludeInboundPorts": "22",
        "config.linkerd.io/skip-outbound-ports": "5432",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254/32",
        "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/8",
    })
    proc = sh("ip", "netns", "exec", netns, *cmd)
    assert proc.returncode == 0, proc.stderr
    rules = nat_rules(netns)
    assert "-A MESHLET_INBOUND -p tcp -m tcp --dport 22 -j RETURN" in rules
    assert "-A MESHLET_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN" in rules
    assert "-A MESHLET_OUTPUT -d 169.254.169.254/32 -j RETURN" in rules
    assert "-A MESHLET_OUTPUT -d 10.0.0.0/8 -p tcp -j MESHLET_REDIRECT" in rules
    assert "-A MESHLET_OUTPUT -p tcp -j MESHLET_REDIRECT" not in rules
    expected = CaptureConfig(exclude_inbound_ports=(22,), exclude_outbound_ports=(5432,),
                             exclude_outbound_cidrs=parse_cidrs("169.254.169.254/32"),
                             include_outbound_cidrs=parse_cidrs("10.0.0.0/8"))
    assert by_chain(rules) == by_chain(mesh_chain_rules(expected))


def test_bad_argument_is_refused_with_its_name(netns):
    proc = sh("ip", "netns", "exec", netns, sys.executable, "-m", "meshlet.proxy.init",
              "--include-outbound-cidrs", "10.0.0.0/99")
    assert proc.returncode != 0 and "10.0.0.0/99" in proc.stderr
    assert nat_rules(netns) == []
