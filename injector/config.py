"""Typed settings of the injector: what an injected pod gets (names shared with install/helm).

Built once from flags (`python -m meshlet.injector`, `meshlet inject`) and passed down;
per-pod changes come from annotations (`overrides.py`), never from mutating this.
"""
from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass, field

from meshlet.controller.config import ControlPlanePorts, ProxyPorts

PROXY_CONTAINER = "meshlet-proxy"
INIT_CONTAINER = "meshlet-init"
TOKEN_VOLUME = "meshlet-identity-token"
TRUST_ROOTS_VOLUME = "meshlet-trust-roots"
TRUST_ROOTS_CONFIGMAP = "meshlet-identity-trust-roots"
TRUST_ROOTS_KEY = "ca-bundle.crt"
TOKEN_AUDIENCE = "identity.meshlet.io"
TOKEN_DIR = "/var/run/secrets/tokens"
TOKEN_FILE = "meshlet-identity-token"
TRUST_ROOTS_DIR = "/var/run/meshlet/identity/trust-roots"
STATUS_ANNOTATION = "meshlet.io/inject-status"
VERSION_ANNOTATION = "meshlet.io/proxy-version"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"

_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")


class ConfigError(ValueError):
    """An injector setting is not usable (the message names it)."""


def meshlet_version() -> str:
    try:
        return importlib.metadata.version("meshlet")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def check_quantity(what: str, value: str) -> str:
    """A Kubernetes resource quantity ("100m", "64Mi", "0.5"), else a ConfigError naming `what`."""
    v = value.strip()
    if not _QUANTITY.match(v):
        raise ConfigError(f"{what}: {value!r} is not a Kubernetes quantity (like 100m, 0.5, 64Mi)")
    return v


@dataclass(frozen=True)
class Resources:
    """The proxy container's requests and limits (None: not set)."""

    cpu_request: str | None = "100m"
    memory_request: str | None = "64Mi"
    cpu_limit: str | None = None
    memory_limit: str | None = None

    def __post_init__(self) -> None:
        for name in ("cpu_request", "memory_request", "cpu_limit", "memory_limit"):
            value = getattr(self, name)
            if value is not None:
                check_quantity(name, value)

    def render(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for section, cpu, mem in (("requests", self.cpu_request, self.memory_request),
                                  ("limits", self.cpu_limit, self.memory_limit)):
            values = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v is not None}
            if values:
                out[section] = values
        return out


@dataclass(frozen=True)
class InjectorConfig:
    """What every injected pod gets unless its annotations say otherwise."""

    proxy_image: str = field(default_factory=lambda: f"meshlet/meshlet:{meshlet_version()}")
    image_pull_policy: str = "IfNotPresent"
    control_plane_namespace: str = "meshlet"
    cluster_domain: str = "cluster.local"
    """DNS suffix of Services (`<svc>.<ns>.svc.<cluster_domain>`)."""
    trust_domain: str = "cluster.local"
    """SPIFFE trust domain of workload identities."""
    identity_addr: str | None = None
    """host:port of identity; None: `meshlet-identity.<cp-ns>.svc.<domain>:8080`."""
    destination_addr: str | None = None
    identity_server_name: str | None = None
    """Name identity's TLS certificate must carry (MESHLET_PROXY_IDENTITY_SERVER_NAME); None:
    `meshlet-identity.<cp-ns>.svc`; "": plaintext Certify (an identity run with --no-tls)."""
    native_sidecar: bool = True
    """The proxy as an initContainer with restartPolicy Always (Kubernetes >= 1.29)."""
    resources: Resources = field(default_factory=Resources)
    proxy_uid: int = 1337
    proxy_gid: int = 1337
    """The capture rules let this group's traffic through (the proxy's own connections)."""
    log_level: str = "info"
    proxy_ports: ProxyPorts = field(default_factory=ProxyPorts)
    cp_ports: ControlPlanePorts = field(default_factory=ControlPlanePorts)
    token_expiration_seconds: int = 3600
    version: str = field(default_factory=meshlet_version)

    def __post_init__(self) -> None:
        if not self.proxy_image.strip():
            raise ConfigError("proxy image must not be empty")
        if self.image_pull_policy not in ("Always", "IfNotPresent", "Never"):
            raise ConfigError(f"image pull policy {self.image_pull_policy!r}: must be Always, IfNotPresent or Never")
        for name in ("proxy_uid", "proxy_gid"):
            if not 0 < getattr(self, name) < 2**31:
                raise ConfigError(f"{name} {getattr(self, name)!r}: must be a positive id (not root)")
        if self.token_expiration_seconds < 600:
            raise ConfigError("token expiration must be at least 600 seconds (the API server's minimum)")

    def _service(self, name: str, port: int) -> str:
        return f"{name}.{self.control_plane_namespace}.svc.{self.cluster_domain}:{port}"

    @property
    def identity_address(self) -> str:
        return self.identity_addr or self._service("meshlet-identity", self.cp_ports.identity)

    @property
    def identity_tls_name(self) -> str:
        if self.identity_server_name is not None:
            return self.identity_server_name
        return f"meshlet-identity.{self.control_plane_namespace}.svc"

    @property
    def destination_address(self) -> str:
        return self.destination_addr or self._service("meshlet-destination", self.cp_ports.destination)
