"""networking.istio.io ServiceEntry, Gateway, Sidecar, WorkloadEntry, ProxyConfig.

Structure after istio/api `networking/v1alpha3/*.proto` and `networking/v1beta1/proxy_config.proto`;
`validate()` hooks run Istio's structural checks. VirtualService is in `istio_virtualservice`,
DestinationRule in `istio_destinationrule`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from meshlet.controller.model.istio_common import (
    Destination,
    LabelsSelector,
    WorkloadSelector,
    check_cidr,
    check_duration,
    check_export_to,
    check_host,
    check_port,
    is_ip,
)
from meshlet.controller.model.meta import Resource

PORT_PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP", "TLS", "UDP")


def _duration(value: str | None, path: str, minimum: float = 0.0) -> Iterable[tuple[str, str]]:
    if value is not None:
        problem = check_duration(value, minimum=minimum)
        if problem:
            yield path, problem


def _protocol(value: str | None, path: str) -> Iterable[tuple[str, str]]:
    if value is not None and value.upper() not in PORT_PROTOCOLS:
        yield path, f"unknown protocol {value!r}; use one of {', '.join(PORT_PROTOCOLS)}"


# === ServiceEntry / WorkloadEntry ===

@dataclass(frozen=True)
class SEPort:
    number: int
    protocol: str | None = None
    name: str | None = None
    target_port: int | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        for name, value in (("number", self.number), ("targetPort", self.target_port)):
            problem = check_port(value) if value is not None else None
            if problem:
                yield name, problem
        yield from _protocol(self.protocol, "protocol")


@dataclass(frozen=True)
class WorkloadEntrySpec:
    address: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    locality: str | None = None
    weight: int | None = None
    service_account: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        for name, port in self.ports.items():
            problem = check_port(port)
            if problem:
                yield f"ports.{name}", problem
        if self.weight is not None and self.weight < 0:
            yield "weight", f"must be 0 or more, got {self.weight}"


@dataclass(frozen=True)
class ServiceEntrySpec:
    hosts: tuple[str, ...]
    addresses: tuple[str, ...] = ()
    ports: tuple[SEPort, ...] = ()
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] = "MESH_EXTERNAL"
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"] = "NONE"
    endpoints: tuple[WorkloadEntrySpec, ...] = ()
    workload_selector: LabelsSelector | None = None
    export_to: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()

    def validate(self) -> Iterable[tuple[str, str]]:
        if not self.hosts:
            yield "hosts", "at least one host is required"
        for i, host in enumerate(self.hosts):
            problem = "host '*' is not allowed in a ServiceEntry" if host == "*" else check_host(host)
            if problem:
                yield f"hosts[{i}]", problem
        for i, addr in enumerate(self.addresses):
            problem = check_cidr(addr)
            if problem:
                yield f"addresses[{i}]", problem
        names: set[str] = set()
        for i, p in enumerate(self.ports):
            if p.name is not None and p.name in names:
                yield f"ports[{i}].name", f"duplicate port name {p.name!r}"
            names.add(p.name or "")
        yield from check_export_to(self.export_to)
        if self.endpoints and self.workload_selector is not None:
            yield "workloadSelector", "only one of endpoints and workloadSelector may be set"
        if self.resolution == "NONE" and self.endpoints:
            yield "endpoints", "no endpoints may be given with resolution NONE"
        for i, ep in enumerate(self.endpoints):
            if self.resolution == "STATIC" and (ep.address is None or not is_ip(ep.address)
                                                and not ep.address.startswith("unix://")):
                yield f"endpoints[{i}].address", "resolution STATIC needs an IP address for every endpoint"
            for name in ep.ports:
                if name not in names:
                    yield f"endpoints[{i}].ports.{name}", f"no port named {name!r} in spec.ports"
        if self.resolution == "STATIC" and not self.endpoints and self.workload_selector is None:
            yield "endpoints", "resolution STATIC needs endpoints (or a workloadSelector)"


@dataclass(frozen=True, kw_only=True)
class ServiceEntry(Resource):
    api_version: ClassVar[str] = "networking.istio.io/v1"
    kind: ClassVar[str] = "ServiceEntry"

    spec: ServiceEntrySpec
    status: Any = None


@dataclass(frozen=True, kw_only=True)
class WorkloadEntry(Resource):
    api_version: ClassVar[str] = "networking.istio.io/v1"
    kind: ClassVar[str] = "WorkloadEntry"

    spec: WorkloadEntrySpec
    status: Any = None


# === Gateway ===

@dataclass(frozen=True)
class GatewayPort:
    number: int
    protocol: str
    name: str | None = None
    target_port: int | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = check_port(self.number)
        if problem:
            yield "number", problem
        yield from _protocol(self.protocol, "protocol")


@dataclass(frozen=True)
class ServerTLSSettings:
    https_redirect: bool | None = None
    mode: Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"] | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()
    verify_certificate_spki: tuple[str, ...] = ()
    verify_certificate_hash: tuple[str, ...] = ()
    min_protocol_version: str | None = None
    max_protocol_version: str | None = None
    cipher_suites: tuple[str, ...] = ()

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.mode in ("SIMPLE", "MUTUAL") and not (self.credential_name or self.credential_names
                                                       or self.server_certificate):
            yield "credentialName", f"mode {self.mode} needs credentialName (or serverCertificate and privateKey)"


@dataclass(frozen=True)
class Server:
    port: GatewayPort
    hosts: tuple[str, ...]
    bind: str | None = None
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if not self.hosts:
            yield "hosts", "at least one host is required"
        for i, host in enumerate(self.hosts):
            problem = check_host(host.partition("/")[2] if "/" in host else host)
            if problem:
                yield f"hosts[{i}]", problem


@dataclass(frozen=True)
class GatewaySpec:
    servers: tuple[Server, ...] = ()
    selector: dict[str, str] = field(default_factory=dict)

    def validate(self) -> Iterable[tuple[str, str]]:
        if not self.servers:
            yield "servers", "at least one server is required"


@dataclass(frozen=True, kw_only=True)
class Gateway(Resource):
    api_version: ClassVar[str] = "networking.istio.io/v1"
    kind: ClassVar[str] = "Gateway"

    spec: GatewaySpec
    status: Any = None


# === Sidecar ===

@dataclass(frozen=True)
class SidecarPort:
    number: int
    protocol: str | None = None
    name: str | None = None
    target_port: int | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = check_port(self.number)
        if problem:
            yield "number", problem
        yield from _protocol(self.protocol, "protocol")


@dataclass(frozen=True)
class IstioEgressListener:
    hosts: tuple[str, ...]
    port: SidecarPort | None = None
    bind: str | None = None
    capture_mode: Literal["DEFAULT", "IPTABLES", "NONE"] | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if not self.hosts:
            yield "hosts", "at least one host is required ('namespace/dnsName', e.g. './*' or 'istio-system/*')"
        for i, host in enumerate(self.hosts):
            ns, slash, name = host.partition("/")
            if not slash or not ns or not name:
                yield f"hosts[{i}]", f"invalid host {host!r}: use 'namespace/dnsName' ('*', '.' or '~' as namespace)"
            else:
                problem = check_host(name)
                if problem:
                    yield f"hosts[{i}]", problem


@dataclass(frozen=True)
class IstioIngressListener:
    port: SidecarPort
    bind: str | None = None
    capture_mode: Literal["DEFAULT", "IPTABLES", "NONE"] | None = None
    default_endpoint: str | None = None
    tls: Any = None
    connection_pool: Any = None


@dataclass(frozen=True)
class OutboundTrafficPolicy:
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] = "ALLOW_ANY"
    egress_proxy: Destination | None = None


@dataclass(frozen=True)
class SidecarSpec:
    workload_selector: LabelsSelector | None = None
    ingress: tuple[IstioIngressListener, ...] = ()
    egress: tuple[IstioEgressListener, ...] = ()
    outbound_traffic_policy: OutboundTrafficPolicy | None = None
    inbound_connection_pool: Any = None


@dataclass(frozen=True, kw_only=True)
class Sidecar(Resource):
    api_version: ClassVar[str] = "networking.istio.io/v1"
    kind: ClassVar[str] = "Sidecar"

    spec: SidecarSpec = field(default_factory=SidecarSpec)
    status: Any = None


# === ProxyConfig (networking.istio.io/v1beta1; the seed writes v1alpha3) ===

@dataclass(frozen=True)
class ProxyImage:
    image_type: str | None = None


@dataclass(frozen=True)
class ProxyConfigSpec:
    selector: WorkloadSelector | None = None
    concurrency: int | None = None
    """Proxy worker processes; unset: from the CPU limit, 0: one per core."""
    environment_variables: dict[str, str] = field(default_factory=dict)
    image: ProxyImage | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.concurrency is not None and self.concurrency < 0:
            yield "concurrency", f"must be 0 or more, got {self.concurrency}"


@dataclass(frozen=True, kw_only=True)
class ProxyConfig(Resource):
    api_version: ClassVar[str] = "networking.istio.io/v1beta1"
    kind: ClassVar[str] = "ProxyConfig"

    spec: ProxyConfigSpec = field(default_factory=ProxyConfigSpec)
    status: Any = None
