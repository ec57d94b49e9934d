"""What a `Get` path names (pure): a Service port, an IP:port, or something outside the mesh.

Accepted paths: `<svc>[:port]` (short name, in the caller's namespace),
`<svc>.<ns>[:port]`, `<svc>.<ns>.svc[.<cluster-domain>][:port]` and
`<ip>[:port]`; the port defaults to 80. Any other well-formed host name (more
labels, like `www.example.com:443`, or labels no Service can have, like
`my_host`) is an `ExternalTarget`: not a mesh service.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .errors import InvalidPath

DEFAULT_PORT = 80
DEFAULT_NAMESPACE = "default"
MAX_PATH = 512
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Host names seen in the wild (Host headers) that cannot be Services but are not garbage either.
_LOOSE_LABEL = re.compile(r"^[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?$")


@dataclass(frozen=True)
class ServiceTarget:
    namespace: str
    name: str
    port: int

    def __str__(self) -> str:
        return f"{self.name}.{self.namespace}:{self.port}"


@dataclass(frozen=True)
class IpTarget:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ExternalTarget:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


Target = ServiceTarget | IpTarget | ExternalTarget


def parse_path(path: str, namespace: str = "", *, cluster_domain: str = "cluster.local") -> Target:
    """Parse a `GetDestination.path`; InvalidPath says what is wrong with it."""
    if not path or not path.strip():
        raise InvalidPath("path is empty")
    if len(path) > MAX_PATH:
        raise InvalidPath(f"path is too long ({len(path)} characters, at most {MAX_PATH})")
    host, port = _split_port(path.strip())
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return IpTarget(str(ip), port)
    host = host.lower().rstrip(".")
    labels = host.split(".")
    for label in labels:
        if not _LOOSE_LABEL.match(label):
            raise InvalidPath(f"path {path!r}: {label!r} is not a valid host name label")
    if not all(_LABEL.match(label) for label in labels):
        return ExternalTarget(host, port)  # e.g. "my_host:80": cannot be a Service name
    default_ns = namespace or DEFAULT_NAMESPACE
    if len(labels) == 1:
        return ServiceTarget(default_ns, labels[0], port)
    if len(labels) == 2:
        return ServiceTarget(labels[1], labels[0], port)
    if labels[2] == "svc" and (len(labels) == 3 or ".".join(labels[3:]) == cluster_domain):
        return ServiceTarget(labels[1], labels[0], port)
    return ExternalTarget(host, port)


def _split_port(path: str) -> tuple[str, int]:
    if path.startswith("["):  # [v6]:port
        end = path.find("]")
        if end < 0:
            raise InvalidPath(f"path {path!r}: unclosed '['")
        host, rest = path[1:end], path[end + 1:]
        if not rest:
            return host, DEFAULT_PORT
        if not rest.startswith(":"):
            raise InvalidPath(f"path {path!r}: expected ':<port>' after ']'")
        return host, _port(rest[1:], path)
    if path.count(":") > 1:
        try:
            return str(ipaddress.IPv6Address(path)), DEFAULT_PORT
        except ValueError:
            raise InvalidPath(f"path {path!r}: too many ':' (write IPv6 addresses as [addr]:port)") from None
    host, sep, port = path.partition(":")
    if not host:
        raise InvalidPath(f"path {path!r}: host is empty")
    return host, (_port(port, path) if sep else DEFAULT_PORT)


def _port(text: str, path: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise InvalidPath(f"path {path!r}: port {text!r} is not a number between 1 and 65535")
    return int(text)
