"""networking.istio.io VirtualService (served at v1, v1beta1, v1alpha3).

Field names and structure follow istio/api `networking/v1alpha3/virtual_service.proto`;
`validate()` hooks run Istio's own structural checks (durations, regexes, weights,
percentages, ports, status codes). References to other objects (hosts, subsets,
gateways) are checked by `meshlet analyze`, which sees the store.

A VirtualService without `hosts` is a delegate, as in Istio: another VirtualService's
`http[].delegate` names it and its http rules are merged under that rule (the
destination service does the merge). A delegate takes no gateways, no tcp/tls rules
and cannot delegate again (one level).
The rule "only the last http rule may lack a match" is a `meshlet analyze` warning
(IST0130), as in Istio, not a validation error.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from meshlet.controller.model.istio_common import (
    MESH_GATEWAY,
    Destination,
    Percent,
    StringMatch,
    check_all,
    check_cidr,
    check_duration,
    check_export_to,
    check_host,
    check_percent,
    check_port,
)
from meshlet.controller.model.istio_http_actions import (
    CorsPolicy,
    Delegate,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPMirrorPolicy,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
)
from meshlet.controller.model.meta import Resource

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
"""An HTTP token (RFC 9110); header names match case-insensitively."""
NETWORKING_VERSIONS = ("networking.istio.io/v1beta1", "networking.istio.io/v1alpha3")
"""apiVersions served besides networking.istio.io/v1."""


def _duration(value: str | None, path: str, minimum: float = 0.0) -> Iterable[tuple[str, str]]:
    if value is not None:
        problem = check_duration(value, minimum=minimum)
        if problem:
            yield path, problem


# === destinations and headers ===

@dataclass(frozen=True)
class HeaderOperations:
    set: dict[str, str] = field(default_factory=dict)
    add: dict[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Headers:
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


@dataclass(frozen=True)
class HTTPRouteDestination:
    destination: Destination
    weight: int | None = None
    """Share = weight / sum of weights; unset with a single destination = 100."""
    headers: Headers | None = None


@dataclass(frozen=True)
class RouteDestination:
    destination: Destination
    weight: int | None = None


def check_weights(weights: list[int | None], path: str) -> Iterable[tuple[str, str]]:
    """Istio's rule: each weight 0..100; with more than one destination they sum to 100."""
    for i, w in enumerate(weights):
        if w is not None:
            problem = check_percent(w, "weight")
            if problem:
                yield f"{path}[{i}].weight", problem
    total = sum(w or 0 for w in weights)
    if len(weights) > 1 and total != 100:
        yield path, f"total destination weight {total} != 100"


# === matches ===

@dataclass(frozen=True)
class HTTPMatchRequest:
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] = field(default_factory=dict)
    port: int | None = None
    source_labels: dict[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    query_params: dict[str, StringMatch] = field(default_factory=dict)
    ignore_uri_case: bool = False
    without_headers: dict[str, StringMatch] = field(default_factory=dict)
    source_namespace: str | None = None
    stat_prefix: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.port is not None:
            problem = check_port(self.port)
            if problem:
                yield "port", problem
        for where, headers in (("headers", self.headers), ("withoutHeaders", self.without_headers)):
            for name in headers:
                if not _HEADER_NAME.match(name):
                    yield f"{where}.{name}", f"invalid header name {name!r}"

    @property
    def is_catch_all(self) -> bool:
        """True when this match accepts every request (no condition at all, or uri prefix '/')."""
        conditions = (self.scheme, self.method, self.authority, self.port, self.source_namespace)
        if any(c is not None for c in conditions) or self.headers or self.query_params or self.without_headers:
            return False
        if self.source_labels or self.gateways:
            return False
        return self.uri is None or (self.uri.prefix == "/" and not self.ignore_uri_case) or \
            (self.uri.regex is not None and self.uri.regex in (".*", "/.*", "^.*$"))


@dataclass(frozen=True)
class L4MatchAttributes:
    destination_subnets: tuple[str, ...] = ()
    port: int | None = None
    source_labels: dict[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    source_namespace: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.port is not None:
            problem = check_port(self.port)
            if problem:
                yield "port", problem
        yield from check_all(self.destination_subnets, "destinationSubnets", check_cidr)


@dataclass(frozen=True)
class TLSMatchAttributes:
    sni_hosts: tuple[str, ...]
    destination_subnets: tuple[str, ...] = ()
    port: int | None = None
    source_labels: dict[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    source_namespace: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if not self.sni_hosts:
            yield "sniHosts", "at least one SNI host is required"
        yield from check_all(self.sni_hosts, "sniHosts", check_host)
        if self.port is not None:
            problem = check_port(self.port)
            if problem:
                yield "port", problem
        yield from check_all(self.destination_subnets, "destinationSubnets", check_cidr)


@dataclass(frozen=True)
class HTTPRoute:
    """One rule of `spec.http` (Istio's HTTPRoute message; not the Gateway API kind)."""

    name: str | None = None
    match: tuple[HTTPMatchRequest, ...] = ()
    route: tuple[HTTPRouteDestination, ...] = ()
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: str | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: tuple[HTTPMirrorPolicy, ...] = ()
    mirror_percentage: Percent | None = None
    mirror_percent: int | None = None
    """Deprecated integer percentage (use mirrorPercentage)."""
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        actions = [n for n, v in (("route", self.route), ("redirect", self.redirect),
                                  ("directResponse", self.direct_response), ("delegate", self.delegate)) if v]
        if not actions:
            yield "route", "a rule needs a route, redirect, directResponse or delegate"
        elif len(actions) > 1:
            yield actions[1], f"only one of route, redirect, directResponse, delegate may be set (got {', '.join(actions)})"
        if self.redirect is not None and self.rewrite is not None:
            yield "rewrite", "rewrite cannot be combined with redirect"
        if self.mirror is not None and self.mirrors:
            yield "mirrors", "only one of mirror and mirrors may be set"
        if self.mirror_percent is not None:
            problem = check_percent(self.mirror_percent, "mirrorPercent")
            if problem:
                yield "mirrorPercent", problem
        yield from _duration(self.timeout, "timeout")
        yield from check_weights([d.weight for d in self.route], "route")

    @property
    def is_catch_all(self) -> bool:
        return not self.match or any(m.is_catch_all for m in self.match)


@dataclass(frozen=True)
class TCPRoute:
    match: tuple[L4MatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()

    def validate(self) -> Iterable[tuple[str, str]]:
        if not self.route:
            yield "route", "at least one destination is required"
        yield from check_weights([d.weight for d in self.route], "route")


@dataclass(frozen=True)
class TLSRoute:
    match: tuple[TLSMatchAttributes, ...]
    route: tuple[RouteDestination, ...] = ()

    def validate(self) -> Iterable[tuple[str, str]]:
        if not self.match:
            yield "match", "a tls rule needs at least one match (with sniHosts)"
        if not self.route:
            yield "route", "at least one destination is required"
        yield from check_weights([d.weight for d in self.route], "route")


# === the kind ===

@dataclass(frozen=True)
class VirtualServiceSpec:
    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    http: tuple[HTTPRoute, ...] = ()
    tls: tuple[TLSRoute, ...] = ()
    tcp: tuple[TCPRoute, ...] = ()
    export_to: tuple[str, ...] = ()

    def validate(self) -> Iterable[tuple[str, str]]:
        for i, host in enumerate(self.hosts):
            problem = check_host(host)
            if problem:
                yield f"hosts[{i}]", problem
        for i, gw in enumerate(self.gateways):
            if not gw or gw.count("/") > 1 or gw.startswith("/") or gw.endswith("/"):
                yield f"gateways[{i}]", f"invalid gateway {gw!r}: use 'name', 'namespace/name' or '{MESH_GATEWAY}'"
        if not self.hosts:
            yield from self._validate_delegate()
        if not (self.http or self.tls or self.tcp):
            yield "http", "a VirtualService needs at least one http, tls or tcp rule"
        yield from check_export_to(self.export_to)
        if self.gateways and MESH_GATEWAY not in self.gateways:
            # sourceLabels select client sidecars: meaningless for a VirtualService bound to gateways only
            for kind, rules in (("http", self.http), ("tcp", self.tcp), ("tls", self.tls)):
                for i, rule in enumerate(rules):
                    for j, m in enumerate(rule.match):
                        if m.source_labels and (not m.gateways or MESH_GATEWAY not in m.gateways):
                            yield (f"{kind}[{i}].match[{j}].sourceLabels",
                                   (f"sourceLabels need the '{MESH_GATEWAY}' gateway (this VirtualService is bound "
                                   f"to gateways {', '.join(self.gateways)} only)"))


    def _validate_delegate(self) -> Iterable[tuple[str, str]]:
        """Istio's checks of a VirtualService without hosts (a delegate)."""
        if not self.http:
            yield "hosts", ("missing: a VirtualService needs at least one host, the services its rules apply "
                            "to (e.g. hosts: [myapp]), unless it is a delegate with http rules")
        if self.gateways:
            yield "gateways", "a delegate VirtualService (no hosts) takes no gateways: its root's apply"
        for kind, rules in (("tcp", self.tcp), ("tls", self.tls)):
            if rules:
                yield kind, f"a delegate VirtualService (no hosts) has only http rules, not {kind}"
        for i, rule in enumerate(self.http):
            if rule.delegate is not None:
                yield f"http[{i}].delegate", "a delegate VirtualService (no hosts) cannot delegate again (one level)"


@dataclass(frozen=True, kw_only=True)
class VirtualService(Resource):
    api_version: ClassVar[str] = "networking.istio.io/v1"
    kind: ClassVar[str] = "VirtualService"

    spec: VirtualServiceSpec
    status: Any = None
