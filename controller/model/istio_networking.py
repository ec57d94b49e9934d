"""networking.istio.io DestinationRule, ServiceEntry, Gateway, Sidecar, WorkloadEntry, ProxyConfig.

Structure after istio/api `networking/v1alpha3/*.proto` and `networking/v1beta1/proxy_config.proto`;
`validate()` hooks run Istio's structural checks. VirtualService is in `istio_virtualservice`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from meshlet.controller.model.convert import yfield
from meshlet.controller.model.istio_common import (
    PortSelector,
    WorkloadSelector,
    check_cidr,
    check_duration,
    check_host,
    check_percent,
    check_port,
    is_ip,
)
from meshlet.controller.model.istio_virtualservice import Destination
from meshlet.controller.model.meta import Resource, check_label

LoadBalancerSimple = Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"]
PORT_PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP", "TLS", "UDP")


def _duration(value: str | None, path: str, minimum: float = 0.0) -> Iterable[tuple[str, str]]:
    if value is not None:
        problem = check_duration(value, minimum=minimum)
        if problem:
            yield path, problem


def _protocol(value: str | None, path: str) -> Iterable[tuple[str, str]]:
    if value is not None and value.upper() not in PORT_PROTOCOLS:
        yield path, f"unknown protocol {value!r}; use one of {', '.join(PORT_PROTOCOLS)}"


def _non_negative(values: dict[str, int | None]) -> Iterable[tuple[str, str]]:
    for name, value in values.items():
        if value is not None and value < 0:
            yield name, f"must be 0 or more, got {value}"


# === DestinationRule ===

@dataclass(frozen=True)
class HTTPCookie:
    name: str
    path: str | None = None
    ttl: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        yield from _duration(self.ttl, "ttl")


@dataclass(frozen=True)
class RingHash:
    minimum_ring_size: int | None = None


@dataclass(frozen=True)
class MagLev:
    table_size: int | None = None


@dataclass(frozen=True)
class ConsistentHashLB:
    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None
    minimum_ring_size: int | None = None
    """Deprecated (use ringHash.minimumRingSize)."""

    def validate(self) -> Iterable[tuple[str, str]]:
        keys = [n for n, v in (("httpHeaderName", self.http_header_name), ("httpCookie", self.http_cookie),
                               ("useSourceIp", self.use_source_ip),
                               ("httpQueryParameterName", self.http_query_parameter_name)) if v]
        if len(keys) != 1:
            yield (keys[1] if keys else "httpHeaderName"), (
                "exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName is required"
                + (f" (got {', '.join(keys)})" if keys else ""))
        if self.ring_hash is not None and self.maglev is not None:
            yield "maglev", "only one of ringHash and maglev may be set"


@dataclass(frozen=True)
class LocalityDistribute:
    from_: str = yfield("from")
    to: dict[str, int] = field(default_factory=dict)

    def validate(self) -> Iterable[tuple[str, str]]:
        total = sum(self.to.values())
        if total != 100:
            yield "to", f"locality weights must sum to 100, got {total}"


@dataclass(frozen=True)
class LocalityFailover:
    from_: str = yfield("from")
    to: str = ""


@dataclass(frozen=True)
class LocalityLoadBalancerSetting:
    distribute: tuple[LocalityDistribute, ...] = ()
    failover: tuple[LocalityFailover, ...] = ()
    failover_priority: tuple[str, ...] = ()
    enabled: bool | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.distribute and self.failover:
            yield "failover", "only one of distribute and failover may be set"


@dataclass(frozen=True)
class LoadBalancerSettings:
    simple: LoadBalancerSimple | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    warmup_duration_secs: str | None = None
    warmup: Any = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.simple is not None and self.consistent_hash is not None:
            yield "consistentHash", "only one of simple and consistentHash may be set"
        yield from _duration(self.warmup_duration_secs, "warmupDurationSecs")


@dataclass(frozen=True)
class TcpKeepalive:
    probes: int | None = None
    time: str | None = None
    interval: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        yield from _duration(self.time, "time")
        yield from _duration(self.interval, "interval")


@dataclass(frozen=True)
class TCPSettings:
    max_connections: int | None = None
    connect_timeout: str | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: str | None = None
    idle_timeout: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        yield from _non_negative({"maxConnections": self.max_connections})
        yield from _duration(self.connect_timeout, "connectTimeout", 0.001)
        yield from _duration(self.max_connection_duration, "maxConnectionDuration")
        yield from _duration(self.idle_timeout, "idleTimeout")


@dataclass(frozen=True)
class HTTPSettings:
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    idle_timeout: str | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: int | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        yield from _non_negative({
            "http1MaxPendingRequests": self.http1_max_pending_requests, "http2MaxRequests": self.http2_max_requests,
            "maxRequestsPerConnection": self.max_requests_per_connection, "maxRetries": self.max_retries,
            "maxConcurrentStreams": self.max_concurrent_streams})
        yield from _duration(self.idle_timeout, "idleTimeout")


@dataclass(frozen=True)
class ConnectionPoolSettings:
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


@dataclass(frozen=True)
class OutlierDetection:
    consecutive_gateway_errors: int | None = yfield(warn_aliases=("consecutiveErrors",), default=None)
    """502/503/504 in a row (Istio's deprecated consecutiveErrors meant these)."""
    consecutive5xx_errors: int | None = None
    split_external_local_origin_errors: bool | None = None
    consecutive_local_origin_failures: int | None = None
    interval: str | None = None
    base_ejection_time: str | None = None
    max_ejection_percent: int | None = None
    min_health_percent: int | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        yield from _non_negative({"consecutiveGatewayErrors": self.consecutive_gateway_errors,
                                  "consecutive5xxErrors": self.consecutive5xx_errors,
                                  "consecutiveLocalOriginFailures": self.consecutive_local_origin_failures})
        yield from _duration(self.interval, "interval", 0.001)
        yield from _duration(self.base_ejection_time, "baseEjectionTime", 0.001)
        for name, value in (("maxEjectionPercent", self.max_ejection_percent),
                            ("minHealthPercent", self.min_health_percent)):
            if value is not None:
                problem = check_percent(value, name)
                if problem:
                    yield name, problem


@dataclass(frozen=True)
class ClientTLSSettings:
    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] = "DISABLE"
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    sni: str | None = None
    insecure_skip_verify: bool | None = None
    ca_crl: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        files = [n for n, v in (("clientCertificate", self.client_certificate), ("privateKey", self.private_key),
                                ("caCertificates", self.ca_certificates), ("credentialName", self.credential_name))
                 if v]
        if self.mode == "ISTIO_MUTUAL" and files:
            yield files[0], "must be empty with mode ISTIO_MUTUAL (meshlet's own certificates are used)"
        if self.mode == "MUTUAL" and not self.credential_name and not (self.client_certificate and self.private_key):
            yield "clientCertificate", "mode MUTUAL needs credentialName, or clientCertificate and privateKey"


@dataclass(frozen=True)
class PortTrafficPolicy:
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


@dataclass(frozen=True)
class TrafficPolicy:
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: tuple[PortTrafficPolicy, ...] = ()
    tunnel: Any = None
    proxy_protocol: Any = None

    def validate(self) -> Iterable[tuple[str, str]]:
        seen: set[int] = set()
        for i, p in enumerate(self.port_level_settings):
            if p.port is None:
                yield f"portLevelSettings[{i}].port", "missing required field"
            elif p.port.number in seen:
                yield f"portLevelSettings[{i}].port", f"port {p.port.number} appears twice"
            else:
                seen.add(p.port.number)


@dataclass(frozen=True)
class Subset:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = check_label(self.name, "subset name")
        if problem:
            yield "name", problem


@dataclass(frozen=True)
class DestinationRuleSpec:
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: WorkloadSelector | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = check_host(self.host)
        if problem:
            yield "host", problem
        seen: set[str] = set()
        for i, s in enumerate(self.subsets):
            if s.name in seen:
                yield f"subsets[{i}].name", f"duplicate subset name {s.name!r}"
            seen.add(s.name)

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)


@dataclass(frozen=True, kw_only=True)
class DestinationRule(Resource):
    api_version: ClassVar[str] = "networking.istio.io/v1"
    kind: ClassVar[str] = "DestinationRule"

    spec: DestinationRuleSpec
    status: Any = None


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
    workload_selector: WorkloadSelector | None = None
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
    workload_selector: WorkloadSelector | None = None
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
