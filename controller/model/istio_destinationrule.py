"""networking.istio.io DestinationRule (served at v1, v1beta1, v1alpha3): policies applied after routing.

Structure after istio/api `networking/v1alpha3/destination_rule.proto`; `validate()` hooks run
Istio's structural checks (durations, percentages, one-of fields, TLS mode consistency).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from meshlet.controller.model.convert import yfield
from meshlet.controller.model.istio_common import (
    PortSelector,
    WorkloadSelector,
    check_duration,
    check_export_to,
    check_host,
    check_percent,
)
from meshlet.controller.model.meta import Resource, check_label

LoadBalancerSimple = Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"]


def _duration(value: str | None, path: str, minimum: float = 0.0) -> Iterable[tuple[str, str]]:
    if value is not None:
        problem = check_duration(value, minimum=minimum)
        if problem:
            yield path, problem


def _non_negative(values: dict[str, int | None]) -> Iterable[tuple[str, str]]:
    for name, value in values.items():
        if value is not None and value < 0:
            yield name, f"must be 0 or more, got {value}"


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
        yield from check_export_to(self.export_to)
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
