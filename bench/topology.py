"""Two network namespaces joined by a bridge: the client side and the server side.

The shape mirrors a local mesh (`meshlet up`): each side has a veth whose peer end
sits on a Linux bridge in the root namespace. Addresses come from
198.18.251.0/24 so nothing leaves the machine. Everything is removed on exit,
also after a failure, and stale leftovers of an earlier crashed run are removed
before creating anything.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class TopologyError(RuntimeError):
    """A namespace, link or address could not be set up."""


@dataclass(frozen=True)
class Side:
    netns: str
    veth: str
    """Name of the veth inside the namespace (its root-side peer is `veth + 'h'`)."""
    ip: str


@dataclass(frozen=True)
class Topology:
    bridge: str = "mltb0"
    prefix_len: int = 24
    client: Side = Side(netns="mltb-client", veth="mltbc0", ip="198.18.251.1")
    server: Side = Side(netns="mltb-server", veth="mltbs0", ip="198.18.251.2")

    def sides(self) -> tuple[Side, Side]:
        return (self.client, self.server)


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, check=False, text=True)
    if check and proc.returncode != 0:
        raise TopologyError(f"{' '.join(args)!r} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def netns_cmd(netns: str, argv: list[str]) -> list[str]:
    """The command line running `argv` inside `netns`."""
    return ["ip", "netns", "exec", netns, *argv]


def teardown(topo: Topology) -> None:
    """Remove everything `setup` creates; missing pieces are fine."""
    for side in topo.sides():
        _run("ip", "netns", "del", side.netns, check=False)
        _run("ip", "link", "del", side.veth + "h", check=False)
    _run("ip", "link", "del", topo.bridge, check=False)


def setup(topo: Topology) -> None:
    teardown(topo)
    _run("ip", "link", "add", topo.bridge, "type", "bridge")
    _run("ip", "link", "set", topo.bridge, "up")
    for side in topo.sides():
        host_end = side.veth + "h"
        _run("ip", "netns", "add", side.netns)
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", side.veth)
        _run("ip", "link", "set", side.veth, "netns", side.netns)
        _run("ip", "link", "set", host_end, "master", topo.bridge)
        _run("ip", "link", "set", host_end, "up")
        ns = ("ip", "netns", "exec", side.netns)
        _run(*ns, "ip", "addr", "add", f"{side.ip}/{topo.prefix_len}", "dev", side.veth)
        _run(*ns, "ip", "link", "set", side.veth, "up")
        _run(*ns, "ip", "link", "set", "lo", "up")


@contextmanager
def created(topo: Topology) -> Iterator[Topology]:
    """Set up the namespaces for the duration of the block, always tearing down."""
    try:
        setup(topo)
        yield topo
    finally:
        teardown(topo)
