"""One target + one caller -> `DestinationProfile` (pure): routes, policies, subsets, retry budget.

- Known target (Service or ServiceEntry host in the caller's scope): the
  VirtualServices for its host visible to the caller (creation order, http
  rules concatenated) give `routes`, `tcp_routes`, `tls_routes`. Without a
  VirtualService, the HTTPRoutes attached to the Service give `routes`
  (a VirtualService wins when both exist: Istio calls mixing them
  unsupported). Without either: one default route `default` to the target
  itself with Istio's default retry policy; its backend authority is the
  path the proxy asked for (so the proxy reuses the target's own streams). So `routes` is never empty for
  a known target; requests matching no route get 404.
- Pod IP target: the default route to that address. Unknown target (or out
  of the caller's Sidecar scope): no routes, no policy (`fully_qualified_name`
  empty; the proxy passes through or refuses per `Get`).
- The DestinationRule of the host (caller's namespace, host's, root; one whose
  workloadSelector matches the caller first) gives
  `traffic_policy` (portLevelSettings for the requested port replace the
  rule-level policy), `port_traffic_policies` and `subsets` (subset policies
  merged over the rule-level one).
- A subset named by a route but missing from the DestinationRule selects
  the label `meshlet.io/missing-subset: <name>`, which no endpoint carries:
  requests fail with 503 as in Istio, until the rule appears.
- `retry_budget`: 20% of requests + 10 retries/s, over 10 s (Linkerd's default).
- A resource that cannot be translated is skipped and reported in `problems`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshlet.api import destination_pb as pb

from . import dr_policy, gateway_routes, vs_routes
from .errors import InvalidRule
from .hosts import canonical_host
from .index import EndpointIndex
from .lookup import CallerRef, Lookup, Resolved, entry_port, identify
from .rules import RuleIndex, namespace_of
from .targets import Target
from .values import attr, items

MISSING_SUBSET_LABEL = "meshlet.io/missing-subset"
_SKIPPED = (InvalidRule, AttributeError, TypeError, ValueError, KeyError)
"""Errors that skip one resource (the others still apply); anything but InvalidRule is a bug, logged as such."""
DEFAULT_ROUTE = "default"
OPAQUE_PROTOCOLS = frozenset({"TCP", "TLS", "MONGO", "MYSQL", "REDIS"})


def retry_budget() -> pb.RetryBudget:
    return pb.RetryBudget(retry_ratio=0.2, min_retries_per_second=10, ttl_ms=10_000)


@dataclass
class Built:
    profile: pb.DestinationProfile
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(kind/namespace/name, reason) of resources skipped."""


class _Backends:
    """vs_routes.Backends over the registry: authorities and subset labels."""

    def __init__(self, endpoints: EndpointIndex, rules: RuleIndex, caller_ns: str, requested_port: int,
                 caller_labels: Mapping[str, str] | None = None) -> None:
        self._endpoints, self._rules, self._caller_ns, self._port = endpoints, rules, caller_ns, requested_port
        self._labels = dict(caller_labels or {})

    def authority(self, host: str, namespace: str, port: int | None) -> str:
        fqdn = canonical_host(host, namespace, self._rules.domain)
        if port is None:
            port = self._single_port(fqdn) or self._port
        return f"{fqdn}:{port}"

    def _single_port(self, fqdn: str) -> int | None:
        service = self._service(fqdn)
        ports = service.spec.ports if service is not None else None
        if ports is None:
            found = self._rules.service_entry_for_host([fqdn], self._caller_ns)
            ports = items(found[0].spec, "ports") if found else ()
            return attr(ports[0], "number") if len(ports) == 1 else None
        return ports[0].port if len(ports) == 1 else None

    def _service(self, fqdn: str) -> Any | None:
        suffix = f".svc.{self._rules.domain}"
        if not fqdn.endswith(suffix):
            return None
        name, _, ns = fqdn[: -len(suffix)].partition(".")
        return self._endpoints.service(ns, name) if name and ns and "." not in ns else None

    def subset_labels(self, host: str, namespace: str, subset: str, field_: str) -> dict[str, str]:
        fqdn = canonical_host(host, namespace, self._rules.domain)
        service = self._service(fqdn)
        host_ns = namespace_of(service) if service is not None else namespace
        labels = dr_policy.subset_labels(self._rules.destination_rule(fqdn, self._caller_ns, host_ns, self._labels),
                                         subset)
        return labels if labels is not None else {MISSING_SUBSET_LABEL: subset}


def default_route(authority: str, retry: pb.RetryPolicy | None = None) -> pb.Route:
    return pb.Route(name=DEFAULT_ROUTE, backends=[pb.WeightedDst(authority=authority, weight=100)],
                    retry=retry or vs_routes.default_retry())


def _mesh_retry(built: Built, rules: RuleIndex) -> pb.RetryPolicy:
    """MeshConfig `defaultHttpRetryPolicy`, else Istio's default."""
    mesh = rules.mesh_config()
    policy = attr(attr(mesh, "spec"), "default_http_retry_policy")
    if policy is None:
        return vs_routes.default_retry()
    try:
        return vs_routes.retry_policy(policy, "defaultHttpRetryPolicy")
    except _SKIPPED as e:
        built.problems.append((_name(mesh), str(e)))
        return vs_routes.default_retry()


def build(target: Target, caller: CallerRef, endpoints: EndpointIndex, rules: RuleIndex, dns: Lookup,
          *, path: str = "") -> Built:
    """The profile of `target` for `caller`; `path`: the GetDestination path as the proxy sent it."""
    found = identify(target, caller, endpoints, rules, dns)
    itself = _authority(path, target)
    if found.kind == "unknown":
        return Built(pb.DestinationProfile())
    if found.kind == "pod":
        return Built(pb.DestinationProfile(routes=[default_route(itself)], retry_budget=retry_budget()))
    built = Built(pb.DestinationProfile(fully_qualified_name=found.host, retry_budget=retry_budget(),
                                        opaque_protocol=_opaque(found)))
    profile = built.profile
    backends = _Backends(endpoints, rules, caller.namespace, found.port, found.labels)
    who = vs_routes.Caller(caller.namespace, found.labels)
    retry = _mesh_retry(built, rules)
    for vs in rules.virtual_services(found.host, caller.namespace):
        try:
            http = vs_routes.http_routes(vs, backends, who, retry=retry, delegates=rules.virtual_service)
            tcp = vs_routes.l4_routes(vs, "tcp", backends, who)
            tls = vs_routes.l4_routes(vs, "tls", backends, who)
        except _SKIPPED as e:
            built.problems.append((_name(vs), str(e)))
            continue
        profile.routes += http
        profile.tcp_routes += tcp
        profile.tls_routes += tls
    if not profile.routes and found.kind == "service":
        attached = rules.http_routes_for_service(found.namespace, found.service.metadata.name, found.port)
        good = []
        for route in attached:
            try:
                gateway_routes.http_routes([route], rules.domain, retry=retry)
            except _SKIPPED as e:
                built.problems.append((_name(route), str(e)))
            else:
                good.append(route)
        profile.routes = gateway_routes.http_routes(good, rules.domain, retry=retry)
    if not profile.routes:
        profile.routes = [default_route(itself, retry)]
    _policies(built, found, caller, rules)
    return built


def _authority(path: str, target: Target) -> str:
    """The path as an authority with a port (the proxy's key for the target's own streams)."""
    text = path.strip().lower()
    if not text:
        return str(target)
    has_port = "]:" in text if text.startswith("[") else ":" in text
    return text if has_port else f"{text}:{target.port}"


def _policies(built: Built, found: Resolved, caller: CallerRef, rules: RuleIndex) -> None:
    dr = rules.destination_rule(found.host, caller.namespace, found.namespace, found.labels)
    if dr is None:
        return
    try:
        policy = attr(dr.spec, "traffic_policy")
        top = dr_policy.traffic_policy(policy)
        ports = dr_policy.port_policies(policy)
        subsets = dr_policy.subsets(dr, found.port)
    except _SKIPPED as e:
        built.problems.append((_name(dr), str(e)))
        return
    profile = built.profile
    profile.traffic_policy = dr_policy.policy_for_port(top, ports, found.port)
    profile.port_traffic_policies = ports
    profile.subsets = subsets


def _opaque(found: Resolved) -> bool:
    if found.kind == "service":
        port = next((p for p in found.service.spec.ports if p.port == found.port), None)
        if port is None:
            return False
        # Istio's protocol selection: appProtocol, else the port name's prefix (`tcp-db`, `mysql`)
        app = (port.app_protocol or (port.name or "").partition("-")[0]).upper()
        return app in OPAQUE_PROTOCOLS
    if found.kind == "entry":
        port = entry_port(found.entry, found.port)
        return bool(port) and str(attr(port, "protocol", default="")).upper() in OPAQUE_PROTOCOLS
    return False


def _name(resource: Any) -> str:
    return f"{resource.kind}/{namespace_of(resource)}/{resource.metadata.name}"
