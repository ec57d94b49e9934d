"""gateway.networking.k8s.io HTTPRoute (v1, v1beta1), for mesh use (GAMMA: parentRefs to a Service).

The Gateway API's own `Gateway`/`GatewayClass` kinds are not modelled: meshlet's
registry keys kinds by name and `Gateway` is Istio's (networking.istio.io).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from meshlet.controller.model.istio_common import (
    check_duration,
    check_host,
    check_percent,
    check_port,
    check_regex,
    parse_duration,
)
from meshlet.controller.model.meta import Resource

HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


@dataclass(frozen=True)
class ParentReference:
    name: str
    group: str | None = None
    kind: str | None = None
    """"Service" for mesh use (group ""), "Gateway" (the default) otherwise."""
    namespace: str | None = None
    section_name: str | None = None
    port: int | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.port is not None:
            problem = check_port(self.port)
            if problem:
                yield "port", problem

    @property
    def is_service(self) -> bool:
        return self.kind == "Service" and self.group in (None, "", "core")


@dataclass(frozen=True)
class HTTPPathMatch:
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = "/"

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.type == "RegularExpression":
            problem = check_regex(self.value)
            if problem:
                yield "value", problem
        elif not self.value.startswith("/"):
            yield "value", f"a {self.type} path must start with '/', got {self.value!r}"


@dataclass(frozen=True)
class HTTPHeaderMatch:
    name: str
    value: str
    type: Literal["Exact", "RegularExpression"] = "Exact"

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.type == "RegularExpression":
            problem = check_regex(self.value)
            if problem:
                yield "value", problem


@dataclass(frozen=True)
class HTTPRouteMatch:
    path: HTTPPathMatch | None = None
    headers: tuple[HTTPHeaderMatch, ...] = ()
    query_params: tuple[HTTPHeaderMatch, ...] = ()
    method: HTTPMethod | None = None


@dataclass(frozen=True)
class HTTPHeader:
    name: str
    value: str


@dataclass(frozen=True)
class HTTPHeaderFilter:
    set: tuple[HTTPHeader, ...] = ()
    add: tuple[HTTPHeader, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class HTTPPathModifier:
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.type == "ReplaceFullPath" and self.replace_full_path is None:
            yield "replaceFullPath", "required with type ReplaceFullPath"
        if self.type == "ReplacePrefixMatch" and self.replace_prefix_match is None:
            yield "replacePrefixMatch", "required with type ReplacePrefixMatch"


@dataclass(frozen=True)
class HTTPRequestRedirectFilter:
    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    path: HTTPPathModifier | None = None
    port: int | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


@dataclass(frozen=True)
class HTTPURLRewriteFilter:
    hostname: str | None = None
    path: HTTPPathModifier | None = None


@dataclass(frozen=True)
class BackendObjectReference:
    name: str
    group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    port: int | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.port is not None:
            problem = check_port(self.port)
            if problem:
                yield "port", problem
        if self.kind in (None, "Service") and self.group in (None, "") and self.port is None:
            yield "port", "a Service backend needs a port"


@dataclass(frozen=True)
class Fraction:
    numerator: int
    denominator: int = 100


@dataclass(frozen=True)
class HTTPRequestMirrorFilter:
    backend_ref: BackendObjectReference
    percent: int | None = None
    fraction: Fraction | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.percent is not None:
            problem = check_percent(self.percent, "percent")
            if problem:
                yield "percent", problem


FILTER_FIELDS = {"RequestHeaderModifier": "request_header_modifier", "ResponseHeaderModifier": "response_header_modifier",
                 "RequestRedirect": "request_redirect", "URLRewrite": "url_rewrite",
                 "RequestMirror": "request_mirror", "ExtensionRef": "extension_ref", "CORS": "cors"}


@dataclass(frozen=True)
class HTTPRouteFilter:
    type: Literal["RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite",
                  "RequestMirror", "ExtensionRef", "CORS"]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_redirect: HTTPRequestRedirectFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    extension_ref: Any = None
    cors: Any = None

    def validate(self) -> Iterable[tuple[str, str]]:
        wanted = FILTER_FIELDS[self.type]
        for attr in FILTER_FIELDS.values():
            yaml = _camel(attr)
            if attr == wanted and getattr(self, attr) is None:
                yield yaml, f"required with type {self.type}"
            elif attr != wanted and getattr(self, attr) is not None:
                yield yaml, f"not allowed with type {self.type}"


@dataclass(frozen=True)
class HTTPBackendRef:
    name: str
    group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    port: int | None = None
    weight: int = 1
    filters: tuple[HTTPRouteFilter, ...] = ()

    def validate(self) -> Iterable[tuple[str, str]]:
        yield from BackendObjectReference(self.name, self.group, self.kind, self.namespace, self.port).validate()
        if not 0 <= self.weight <= 1_000_000:
            yield "weight", f"must be between 0 and 1000000, got {self.weight}"


@dataclass(frozen=True)
class HTTPRouteTimeouts:
    request: str | None = None
    backend_request: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        for name, value in (("request", self.request), ("backendRequest", self.backend_request)):
            if value is not None:
                problem = check_duration(value)
                if problem:
                    yield name, problem


@dataclass(frozen=True)
class HTTPRouteRule:
    name: str | None = None
    matches: tuple[HTTPRouteMatch, ...] = ()
    filters: tuple[HTTPRouteFilter, ...] = ()
    backend_refs: tuple[HTTPBackendRef, ...] = ()
    timeouts: HTTPRouteTimeouts | None = None
    retry: Any = None
    session_persistence: Any = None

    def validate(self) -> Iterable[tuple[str, str]]:
        types = [f.type for f in self.filters]
        for once in ("RequestRedirect", "URLRewrite"):
            if types.count(once) > 1:
                yield "filters", f"filter {once} may appear only once"
        if "RequestRedirect" in types and "URLRewrite" in types:
            yield "filters", "RequestRedirect and URLRewrite cannot be combined"
        if "RequestRedirect" in types and self.backend_refs:
            yield "backendRefs", "a rule with a RequestRedirect filter takes no backendRefs"
        t = self.timeouts
        if t is not None and t.request and t.backend_request and not check_duration(t.request) \
                and not check_duration(t.backend_request):
            req, backend = parse_duration(t.request), parse_duration(t.backend_request)
            if req and backend > req:
                yield "timeouts.backendRequest", "must not be longer than timeouts.request"


@dataclass(frozen=True)
class HTTPRouteSpec:
    parent_refs: tuple[ParentReference, ...] = ()
    hostnames: tuple[str, ...] = ()
    rules: tuple[HTTPRouteRule, ...] = ()

    def validate(self) -> Iterable[tuple[str, str]]:
        for i, host in enumerate(self.hostnames):
            problem = check_host(host)
            if problem:
                yield f"hostnames[{i}]", problem
        if len(self.rules) > 16:
            yield "rules", f"at most 16 rules are allowed, got {len(self.rules)}"


@dataclass(frozen=True, kw_only=True)
class HTTPRoute(Resource):
    api_version: ClassVar[str] = "gateway.networking.k8s.io/v1"
    kind: ClassVar[str] = "HTTPRoute"

    spec: HTTPRouteSpec = field(default_factory=HTTPRouteSpec)
    status: Any = None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)
