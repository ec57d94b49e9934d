"""Typed proxy configuration, built once from the environment (see docs/architecture.md)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from meshlet.controller.config import ProxyPorts


class ConfigError(ValueError):
    """An environment variable is missing or malformed (the message names it)."""


@dataclass(frozen=True)
class ProxyConfig:
    identity: str = ""
    """SPIFFE id to request; empty runs without identity (no mTLS, never ready)."""
    token_file: str = ""
    trust_anchors: str = ""
    """PEM file of the trust anchors."""
    destination_addr: tuple[str, int] | None = None
    identity_addr: tuple[str, int] | None = None
    identity_server_name: str = ""
    """Set (Kubernetes mode, MESHLET_PROXY_IDENTITY_SERVER_NAME): Certify goes over TLS and identity's
    certificate must name this host (`meshlet-identity.<ns>.svc`) and chain to the trust anchors."""
    namespace: str = ""
    pod: str = ""
    service_account: str = ""
    pod_ip: str = ""
    pod_labels: tuple[tuple[str, str], ...] = ()
    """The pod's labels (route sourceLabels, locality), from MESHLET_PROXY_POD_LABELS."""
    log_level: str = "info"
    concurrency: int = 1
    """Worker processes sharing the listeners (ProxyConfig `concurrency`, MESHLET_PROXY_CONCURRENCY;
    0 = one per core); 1 is the single-process proxy (workers.py for more)."""
    ports: ProxyPorts = field(default_factory=ProxyPorts)
    bind_ip: str = "0.0.0.0"
    inbound_app_ip: str = "127.0.0.1"
    """Where inbound traffic is forwarded (the app's port is the original destination port)."""
    detect_timeout: float = 0.3
    """Seconds to wait for the client's first bytes before treating the stream as opaque
    (server-speaks-first protocols)."""
    connect_timeout: float = 3.0
    resolve_timeout: float = 2.0
    """How long a first request waits for the control plane before passing through."""
    renew_fraction: float = 0.7
    """Renew the certificate at this fraction of its lifetime."""
    drain_timeout: float = 10.0
    max_targets: int = 1000
    pool_max_idle: int = 64
    idle_timeout: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxyConfig:
        e = os.environ if env is None else env
        get = lambda name: e.get(name, "").strip()
        identity = get("MESHLET_PROXY_IDENTITY")
        if identity and not identity.startswith("spiffe://"):
            raise ConfigError(f"MESHLET_PROXY_IDENTITY must be a spiffe:// URI, got {identity!r}")
        if identity:
            for name in ("MESHLET_PROXY_TOKEN_FILE", "MESHLET_PROXY_TRUST_ANCHORS", "MESHLET_PROXY_IDENTITY_ADDR"):
                if not get(name):
                    raise ConfigError(f"{name} is required when MESHLET_PROXY_IDENTITY is set")
        kwargs: dict[str, object] = {}
        for attr, name, conv in (
            ("detect_timeout", "MESHLET_PROXY_DETECT_TIMEOUT", float),
            ("connect_timeout", "MESHLET_PROXY_CONNECT_TIMEOUT", float),
            ("resolve_timeout", "MESHLET_PROXY_RESOLVE_TIMEOUT", float),
            ("drain_timeout", "MESHLET_PROXY_DRAIN_TIMEOUT", float),
        ):
            if get(name):
                try:
                    kwargs[attr] = conv(get(name))
                except ValueError:
                    raise ConfigError(f"{name} must be a number, got {get(name)!r}") from None
        if get("MESHLET_PROXY_CONCURRENCY"):
            kwargs["concurrency"] = parse_concurrency(get("MESHLET_PROXY_CONCURRENCY"))
        if get("MESHLET_PROXY_INBOUND_APP_IP"):
            kwargs["inbound_app_ip"] = get("MESHLET_PROXY_INBOUND_APP_IP")
        return cls(
            identity=identity,
            token_file=get("MESHLET_PROXY_TOKEN_FILE"),
            trust_anchors=get("MESHLET_PROXY_TRUST_ANCHORS"),
            destination_addr=parse_addr("MESHLET_PROXY_DESTINATION_ADDR", get("MESHLET_PROXY_DESTINATION_ADDR")),
            identity_addr=parse_addr("MESHLET_PROXY_IDENTITY_ADDR", get("MESHLET_PROXY_IDENTITY_ADDR")),
            identity_server_name=get("MESHLET_PROXY_IDENTITY_SERVER_NAME"),
            namespace=get("MESHLET_PROXY_NAMESPACE"),
            pod=get("MESHLET_PROXY_POD"),
            service_account=get("MESHLET_PROXY_SERVICE_ACCOUNT"),
            pod_ip=get("MESHLET_PROXY_POD_IP"),
            pod_labels=parse_labels("MESHLET_PROXY_POD_LABELS", get("MESHLET_PROXY_POD_LABELS")),
            log_level=get("MESHLET_PROXY_LOG_LEVEL") or "info",
            **kwargs,  # type: ignore[arg-type]
        )

    def public(self) -> dict[str, object]:
        """The configuration as shown by /config_dump (no secrets: the token file's path only)."""
        return {
            "identity": self.identity, "token_file": self.token_file, "trust_anchors": self.trust_anchors,
            "destination_addr": _fmt(self.destination_addr), "identity_addr": _fmt(self.identity_addr),
            "identity_server_name": self.identity_server_name,
            "namespace": self.namespace, "pod": self.pod, "service_account": self.service_account,
            "pod_ip": self.pod_ip, "pod_labels": dict(self.pod_labels), "ports": {"outbound": self.ports.outbound, "inbound": self.ports.inbound,
                                             "admin": self.ports.admin, "metrics": self.ports.metrics,
                                             "health": self.ports.health},
            "detect_timeout": self.detect_timeout, "connect_timeout": self.connect_timeout,
            "concurrency": self.concurrency,
        }


def _fmt(addr: tuple[str, int] | None) -> str | None:
    return None if addr is None else f"{addr[0]}:{addr[1]}"


def parse_addr(name: str, value: str) -> tuple[str, int] | None:
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name} must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


def parse_concurrency(value: str) -> int:
    """A worker count: 1 or more, or 0 for one per core."""
    if not (value.isascii() and value.isdigit()):
        raise ConfigError(f"MESHLET_PROXY_CONCURRENCY must be a whole number (0 = one per core), got {value!r}")
    return int(value) or (os.cpu_count() or 1)


def parse_labels(name: str, value: str) -> tuple[tuple[str, str], ...]:
    """A JSON object of strings (`{"app":"web","version":"v1"}`) or `k=v,k=v`."""
    if not value:
        return ()
    if value.startswith("{"):
        import json

        try:
            d = json.loads(value)
        except ValueError as e:
            raise ConfigError(f"{name}: invalid JSON: {e}") from None
        if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in d.items()):
            raise ConfigError(f"{name} must be a JSON object of strings, got {value!r}")
        return tuple(sorted(d.items()))
    out = {}
    for part in value.split(","):
        if not part.strip():
            continue
        k, sep, v = part.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"{name} must be k=v,k=v or a JSON object, got {value!r}")
        out[k.strip()] = v.strip()
    return tuple(sorted(out.items()))
