"""Kubernetes kinds meshlet reads in Kubernetes mode: EndpointSlice (discovery.k8s.io/v1) and Secret (v1).

EndpointSlices are how a cluster says which addresses back a Service (the
`kubernetes.io/service-name` label names it); Secrets carry certificates
(the identity issuer, gateway certificates). Both keep their data at the top
level (no `spec`), as Kubernetes writes them. Only the fields meshlet uses are
modelled; objects read from a cluster carry more, which the Kubernetes store
ignores (lenient read).
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from meshlet.controller.model.meta import ObjectMeta, Resource

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
"""Label of an EndpointSlice naming the Service it belongs to."""

SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
TLS_SECRET = "kubernetes.io/tls"


# === EndpointSlice ===

@dataclass(frozen=True)
class EndpointConditions:
    ready: bool | None = None
    """None means unknown, which consumers treat as ready (as Kubernetes does)."""
    serving: bool | None = None
    terminating: bool | None = None


@dataclass(frozen=True)
class ObjectReference:
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None


@dataclass(frozen=True)
class Endpoint:
    addresses: tuple[str, ...]
    conditions: EndpointConditions = field(default_factory=EndpointConditions)
    hostname: str | None = None
    target_ref: ObjectReference | None = None
    node_name: str | None = None
    zone: str | None = None
    hints: Any = None

    @property
    def ready(self) -> bool:
        return self.conditions.ready is not False


@dataclass(frozen=True)
class EndpointPort:
    name: str | None = None
    port: int | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    app_protocol: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.port is not None and not 0 <= self.port <= 65535:
            yield "port", f"must be between 0 and 65535, got {self.port}"


@dataclass(frozen=True, kw_only=True)
class EndpointSlice(Resource):
    api_version: ClassVar[str] = "discovery.k8s.io/v1"
    kind: ClassVar[str] = "EndpointSlice"

    address_type: Literal["IPv4", "IPv6", "FQDN"]
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()

    @property
    def service_name(self) -> str | None:
        return self.metadata.labels.get(SERVICE_NAME_LABEL)

    def validate(self) -> Iterable[tuple[str, str]]:
        if len(self.endpoints) > 1000:
            yield "endpoints", f"at most 1000 endpoints per slice, got {len(self.endpoints)}"
        if len(self.ports) > 100:
            yield "ports", f"at most 100 ports per slice, got {len(self.ports)}"
        for i, ep in enumerate(self.endpoints):
            if not 1 <= len(ep.addresses) <= 100:
                yield f"endpoints[{i}].addresses", "must hold between 1 and 100 addresses"
            for j, address in enumerate(ep.addresses):
                problem = _check_address(self.address_type, address)
                if problem:
                    yield f"endpoints[{i}].addresses[{j}]", problem


def _check_address(address_type: str, address: str) -> str | None:
    if address_type == "FQDN":
        return None if address and len(address) <= 253 else f"invalid FQDN {address!r}"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    want = 4 if address_type == "IPv4" else 6
    if parsed.version != want:
        return f"{address!r} is not an {address_type} address (addressType: {address_type})"
    return None


# === Secret ===

@dataclass(frozen=True, kw_only=True)
class Secret(Resource):
    api_version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "Secret"

    type: str = "Opaque"
    data: dict[str, str] = field(default_factory=dict)
    """Values base64-encoded, as Kubernetes stores them; `decoded()` gives the bytes."""
    string_data: dict[str, str] = field(default_factory=dict)
    """Write-only convenience (plain text); the API server merges it into `data`."""
    immutable: bool | None = None

    def decoded(self) -> dict[str, bytes]:
        """`data` decoded, with `stringData` on top (as the API server would store it)."""
        out = {key: base64.b64decode(value) for key, value in self.data.items()}
        out.update({key: value.encode() for key, value in self.string_data.items()})
        return out

    def value(self, key: str) -> bytes | None:
        return self.decoded().get(key)

    def validate(self) -> Iterable[tuple[str, str]]:
        for key, value in self.data.items():
            if not SECRET_KEY.match(key):
                yield f"data.{key}", "invalid key: use letters, digits, '-', '_' and '.'"
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                yield f"data.{key}", "is not valid base64 (Secret data is base64-encoded; use stringData for text)"
        for key in self.string_data:
            if not SECRET_KEY.match(key):
                yield f"stringData.{key}", "invalid key: use letters, digits, '-', '_' and '.'"
        if self.type == TLS_SECRET:
            keys = set(self.data) | set(self.string_data)
            for needed in ("tls.crt", "tls.key"):
                if needed not in keys:
                    yield "data", f"a {TLS_SECRET} Secret needs the key {needed!r}"


def secret_from_bytes(name: str, namespace: str, values: dict[str, bytes], type_: str = "Opaque") -> Secret:
    """A Secret holding `values` (base64-encoded into `data`)."""
    return Secret(metadata=ObjectMeta(name=name, namespace=namespace), type=type_,
                  data={k: base64.b64encode(v).decode() for k, v in values.items()})


__all__ = [
    "SERVICE_NAME_LABEL",
    "TLS_SECRET",
    "Endpoint",
    "EndpointConditions",
    "EndpointPort",
    "EndpointSlice",
    "ObjectReference",
    "Secret",
    "secret_from_bytes",
]
