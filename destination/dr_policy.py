"""DestinationRule -> `TrafficPolicy`, `PortTrafficPolicy` and `Subset` messages (pure).

Istio's semantics:
- `loadBalancer.simple` UNSPECIFIED and LEAST_CONN mean LEAST_REQUEST;
  `consistentHash` wins over `simple`;
- locality-aware balancing is on when `localityLbSetting.enabled` says so,
  and otherwise whenever `outlierDetection` is set (the mesh default enables
  locality LB, which only takes effect with outlier detection);
- outlierDetection defaults: consecutive5xxErrors 5, interval 10s,
  baseEjectionTime 30s, maxEjectionPercent 10;
- `portLevelSettings` replace the rule-level policy for their port without
  inheriting from it; a subset's policy overrides the rule-level one field
  by field (loadBalancer, connectionPool, outlierDetection, tls).
"""
from __future__ import annotations

from typing import Any

from meshlet.api import destination_pb as pb

from .errors import InvalidRule
from .values import attr, duration_ms, items, mapping, uint

_LB = {
    "UNSPECIFIED": pb.LoadBalancerPolicy.LEAST_REQUEST,
    "LEAST_REQUEST": pb.LoadBalancerPolicy.LEAST_REQUEST,
    "LEAST_CONN": pb.LoadBalancerPolicy.LEAST_REQUEST,
    "ROUND_ROBIN": pb.LoadBalancerPolicy.ROUND_ROBIN,
    "RANDOM": pb.LoadBalancerPolicy.RANDOM,
    "PASSTHROUGH": pb.LoadBalancerPolicy.PASSTHROUGH,
}
_TLS = {
    "ISTIO_MUTUAL": pb.TlsMode.ISTIO_MUTUAL,
    "DISABLE": pb.TlsMode.DISABLE,
    "SIMPLE": pb.TlsMode.SIMPLE,
    "MUTUAL": pb.TlsMode.MUTUAL,
}
OUTLIER_DEFAULTS = {"consecutive_5xx_errors": 5, "interval_ms": 10_000, "base_ejection_time_ms": 30_000,
                    "max_ejection_percent": 10}


def traffic_policy(policy: Any, field: str = "trafficPolicy") -> pb.TrafficPolicy | None:
    if policy is None:
        return None
    outlier = outlier_detection(attr(policy, "outlier_detection"), f"{field}.outlierDetection")
    return pb.TrafficPolicy(
        load_balancer=load_balancer(attr(policy, "load_balancer"), outlier is not None, f"{field}.loadBalancer"),
        connection_pool=connection_pool(attr(policy, "connection_pool"), f"{field}.connectionPool"),
        outlier_detection=outlier,
        tls=client_tls(attr(policy, "tls"), f"{field}.tls"),
    )


def load_balancer(lb: Any, has_outlier: bool, field: str) -> pb.LoadBalancer | None:
    locality_setting = attr(lb, "locality_lb_setting")
    explicit = attr(locality_setting, "enabled")
    locality = bool(explicit) if explicit is not None else (has_outlier or locality_setting is not None)
    if lb is None:
        return pb.LoadBalancer(locality_enabled=True) if has_outlier else None
    out = pb.LoadBalancer(locality_enabled=locality)
    simple = attr(lb, "simple")
    if simple is not None:
        try:
            out.policy = _LB[str(simple).upper()]
        except KeyError:
            raise InvalidRule(f"{field}.simple: unknown policy {simple!r} "
                              f"(one of {', '.join(sorted(_LB))})") from None
    hashing = attr(lb, "consistent_hash")
    if hashing is not None:
        out.policy = pb.LoadBalancerPolicy.CONSISTENT_HASH
        out.consistent_hash = consistent_hash(hashing, f"{field}.consistentHash")
    return out


def consistent_hash(h: Any, field: str) -> pb.ConsistentHash:
    header, cookie = attr(h, "http_header_name"), attr(h, "http_cookie")
    query, source_ip = attr(h, "http_query_parameter_name"), attr(h, "use_source_ip")
    if header is not None:
        return pb.ConsistentHash(http_header_name=str(header).lower())
    if cookie is not None:
        return pb.ConsistentHash(http_cookie_name=attr(cookie, "name", default=""),
                                 cookie_ttl_ms=duration_ms(attr(cookie, "ttl"), f"{field}.httpCookie.ttl") or 0,
                                 cookie_path=attr(cookie, "path", default="") or "")
    if query is not None:
        return pb.ConsistentHash(http_query_parameter_name=str(query))
    if source_ip:
        return pb.ConsistentHash(use_source_ip=True)
    raise InvalidRule(f"{field}: set one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName")


def connection_pool(pool: Any, field: str) -> pb.ConnectionPool | None:
    if pool is None:
        return None
    tcp, http = attr(pool, "tcp"), attr(pool, "http")
    upgrade = str(attr(http, "h2_upgrade_policy", default="DEFAULT")).upper()
    return pb.ConnectionPool(
        max_connections=uint(attr(tcp, "max_connections"), f"{field}.tcp.maxConnections"),
        connect_timeout_ms=duration_ms(attr(tcp, "connect_timeout"), f"{field}.tcp.connectTimeout") or 0,
        http1_max_pending_requests=uint(attr(http, "http1_max_pending_requests"), f"{field}.http.http1MaxPendingRequests"),
        http2_max_requests=uint(attr(http, "http2_max_requests"), f"{field}.http.http2MaxRequests"),
        max_requests_per_connection=uint(attr(http, "max_requests_per_connection"),
                                         f"{field}.http.maxRequestsPerConnection"),
        h2_upgrade=upgrade == "UPGRADE",
    )


def outlier_detection(od: Any, field: str) -> pb.OutlierDetection | None:
    if od is None:
        return None
    consecutive = attr(od, "consecutive_5xx_errors", "consecutive5xx_errors", "consecutive_errors")
    return pb.OutlierDetection(
        consecutive_5xx_errors=uint(consecutive, f"{field}.consecutive5xxErrors",
                                    default=OUTLIER_DEFAULTS["consecutive_5xx_errors"]),
        consecutive_gateway_errors=uint(attr(od, "consecutive_gateway_errors"), f"{field}.consecutiveGatewayErrors"),
        interval_ms=_ms_or(attr(od, "interval"), f"{field}.interval", OUTLIER_DEFAULTS["interval_ms"]),
        base_ejection_time_ms=_ms_or(attr(od, "base_ejection_time"), f"{field}.baseEjectionTime",
                                     OUTLIER_DEFAULTS["base_ejection_time_ms"]),
        max_ejection_percent=uint(attr(od, "max_ejection_percent"), f"{field}.maxEjectionPercent",
                                  default=OUTLIER_DEFAULTS["max_ejection_percent"]),
    )


def _ms_or(value: Any, field: str, default: int) -> int:
    ms = duration_ms(value, field)
    return default if ms is None else ms


def client_tls(tls: Any, field: str) -> pb.ClientTls | None:
    if tls is None:
        return None
    mode = str(attr(tls, "mode", default="DISABLE")).upper()
    if mode not in _TLS:
        raise InvalidRule(f"{field}.mode: unknown mode {mode!r} (one of {', '.join(sorted(_TLS))})")
    return pb.ClientTls(
        mode=_TLS[mode],
        sni=attr(tls, "sni", default=""),
        ca_certificates=attr(tls, "ca_certificates", default=""),
        client_certificate=attr(tls, "client_certificate", default=""),
        private_key=attr(tls, "private_key", default=""),
        subject_alt_names=list(items(tls, "subject_alt_names")),
    )


def port_policies(policy: Any, field: str = "trafficPolicy") -> list[pb.PortTrafficPolicy]:
    out = []
    for i, setting in enumerate(items(policy, "port_level_settings")):
        number = attr(attr(setting, "port"), "number")
        if number is None:
            raise InvalidRule(f"{field}.portLevelSettings[{i}].port.number: required")
        out.append(pb.PortTrafficPolicy(port=uint(number, f"{field}.portLevelSettings[{i}].port.number"),
                                        policy=traffic_policy(setting, f"{field}.portLevelSettings[{i}]")))
    return out


def policy_for_port(top: pb.TrafficPolicy | None, ports: list[pb.PortTrafficPolicy], port: int) -> pb.TrafficPolicy | None:
    """The policy for `port`: its portLevelSettings entry (no inheritance) or the rule-level policy."""
    for entry in ports:
        if entry.port == port:
            return entry.policy
    return top


def merge(base: pb.TrafficPolicy | None, override: pb.TrafficPolicy | None) -> pb.TrafficPolicy | None:
    """Subset policy over the rule-level one, field by field."""
    if base is None or override is None:
        return override or base
    return pb.TrafficPolicy(
        load_balancer=override.load_balancer or base.load_balancer,
        connection_pool=override.connection_pool or base.connection_pool,
        outlier_detection=override.outlier_detection or base.outlier_detection,
        tls=override.tls or base.tls,
    )


def subsets(dr: Any, port: int) -> list[pb.Subset]:
    spec = dr.spec
    top = traffic_policy(attr(spec, "traffic_policy"))
    base = policy_for_port(top, port_policies(attr(spec, "traffic_policy")), port)
    out = []
    for i, subset in enumerate(items(spec, "subsets")):
        name = attr(subset, "name")
        if not name:
            raise InvalidRule(f"subsets[{i}].name: required")
        own = attr(subset, "traffic_policy")
        own_pb = policy_for_port(traffic_policy(own, f"subsets[{i}].trafficPolicy"),
                                 port_policies(own, f"subsets[{i}].trafficPolicy"), port)
        out.append(pb.Subset(name=name, labels={str(k): str(v) for k, v in mapping(subset, "labels").items()},
                             traffic_policy=merge(base, own_pb)))
    return out


def subset_labels(dr: Any | None, name: str) -> dict[str, str] | None:
    """Labels of subset `name` in `dr`; None when the rule (or the subset) does not exist."""
    if dr is None:
        return None
    for subset in items(dr.spec, "subsets"):
        if attr(subset, "name") == name:
            return {str(k): str(v) for k, v in mapping(subset, "labels").items()}
    return None
