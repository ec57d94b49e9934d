"""Typed configuration shared by the control plane, the local runtime and the CLI.

Everything is a frozen dataclass built once (from flags or the environment)
and passed down explicitly; nothing reads globals.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/meshlet")
STATE_DIR_ENV = "MESHLET_STATE_DIR"


@dataclass(frozen=True)
class ProxyPorts:
    """Listener ports of every proxy (the seed's, which are Istio's)."""

    outbound: int = 15001
    inbound: int = 15006
    admin: int = 15000
    metrics: int = 15090
    health: int = 15021

    def all(self) -> tuple[int, ...]:
        return (self.outbound, self.inbound, self.admin, self.metrics, self.health)


@dataclass(frozen=True)
class ControlPlanePorts:
    destination: int = 8086
    destination_admin: int = 9996
    identity: int = 8080
    identity_admin: int = 9990


@dataclass(frozen=True)
class LocalConfig:
    """Settings of one local mesh (`meshlet up`)."""

    state_dir: Path = DEFAULT_STATE_DIR
    """SQLite store, trust anchor and issuer, pod logs and runtime state."""
    pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("198.18.0.0/16")
    """Pod addresses; the first host address is the bridge (gateway) where the control plane listens."""
    service_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("198.19.0.0/16")
    """Virtual IPs of Services."""
    bridge: str = "mlt0"
    """Name of the Linux bridge every pod's veth is attached to."""
    netns_prefix: str = "mlt-"
    """Prefix of every network namespace and veth this mesh creates (used to clean up)."""
    trust_domain: str = "cluster.local"
    proxy_gid: int = 1337
    """The proxy runs with this group id; iptables lets its own traffic through unredirected."""
    exec_uid: int = 1000
    """`meshlet exec` runs commands as this ordinary uid."""
    proxy_ports: ProxyPorts = field(default_factory=ProxyPorts)
    cp_ports: ControlPlanePorts = field(default_factory=ControlPlanePorts)

    @property
    def gateway_ip(self) -> ipaddress.IPv4Address:
        return next(self.pod_cidr.hosts())

    @property
    def db_path(self) -> Path:
        return self.state_dir / "store.db"

    @property
    def destination_addr(self) -> str:
        return f"{self.gateway_ip}:{self.cp_ports.destination}"

    @property
    def identity_addr(self) -> str:
        return f"{self.gateway_ip}:{self.cp_ports.identity}"

    @classmethod
    def from_env(cls, state_dir: str | os.PathLike[str] | None = None) -> "LocalConfig":
        """Build from MESHLET_* environment variables, `state_dir` taking precedence."""
        env = os.environ
        kwargs: dict[str, object] = {}
        sd = state_dir or env.get(STATE_DIR_ENV)
        if sd:
            kwargs["state_dir"] = Path(sd)
        if env.get("MESHLET_POD_CIDR"):
            kwargs["pod_cidr"] = ipaddress.IPv4Network(env["MESHLET_POD_CIDR"])
        if env.get("MESHLET_SERVICE_CIDR"):
            kwargs["service_cidr"] = ipaddress.IPv4Network(env["MESHLET_SERVICE_CIDR"])
        if env.get("MESHLET_BRIDGE"):
            kwargs["bridge"] = env["MESHLET_BRIDGE"]
        if env.get("MESHLET_NETNS_PREFIX"):
            kwargs["netns_prefix"] = env["MESHLET_NETNS_PREFIX"]
        if env.get("MESHLET_TRUST_DOMAIN"):
            kwargs["trust_domain"] = env["MESHLET_TRUST_DOMAIN"]
        return cls(**kwargs)  # type: ignore[arg-type]


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"
