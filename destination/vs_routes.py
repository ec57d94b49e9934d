"""VirtualService -> `Route` / `L4Route` messages (pure), with Istio's semantics and defaults.

- `http[]` keeps its order (first match wins); each `match[]` entry is one
  `RequestMatch` (AND inside, OR across); no match list = every request.
- `sourceLabels`, `sourceNamespace` and per-match `gateways` select client
  workloads, they are not request attributes: they are evaluated here
  against the caller (its namespace and pod labels). A match entry that does
  not apply to the caller is dropped (a rule whose every entry is dropped is
  dropped), and the fields are left empty in what the proxy receives.
- destinations: `authority` is the backend's FQDN:port (see `Backends`);
  a single destination gets weight 100; with several, weight/sum (all
  unset: equal shares); `subset` -> the DestinationRule's labels.
- `retries` unset: Istio's default (2 attempts on connect-failure,
  refused-stream, unavailable, cancelled, retriable-status-codes without
  codes); `attempts: 0` or a `retries` without attempts: no retries.
  Bare status codes in `retryOn` go to `retriable_status_codes`.
- `fault` percentages unset: nothing is faulted (delay_percent/abort_percent 0).
- `mirrorPercentage` unset: 100; `mirrors[]`: the first one.
- `redirect.redirectCode` unset: 301.
- `http[].delegate`: the delegate VirtualService's rules replace the rule,
  merged under its matches (`delegate.py`); a VirtualService without hosts
  (a delegate) gives no routes of its own.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from meshlet.api import destination_pb as pb

from .delegate import DelegateLookup, expand
from .errors import InvalidRule
from .values import (
    attr,
    check_regex,
    duration_ms,
    header_ops,
    items,
    labels_match,
    mapping,
    percent,
    string_match,
    uint,
)

RETRY_ON = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx", "refused-stream",
    "retriable-status-codes", "retriable-headers", "envoy-ratelimited", "http3-post-connect-failure",
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
})
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes")
DEFAULT_ATTEMPTS = 2
GRPC_CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
    "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
    "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
_IGNORED_HEADER_KEYS = frozenset({"uri", "scheme", "method", "authority"})


class Backends(Protocol):
    """How a rule's destination host becomes a backend (implemented by the profile builder)."""

    def authority(self, host: str, namespace: str, port: int | None) -> str: ...

    def subset_labels(self, host: str, namespace: str, subset: str, field: str) -> dict[str, str]: ...


@dataclass(frozen=True)
class Caller:
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)


def default_retry() -> pb.RetryPolicy:
    return pb.RetryPolicy(attempts=DEFAULT_ATTEMPTS, retry_on=list(DEFAULT_RETRY_ON))


# === http ===

def http_routes(vs: Any, backends: Backends, caller: Caller, *,
                retry: pb.RetryPolicy | None = None, delegates: DelegateLookup | None = None) -> list[pb.Route]:
    """`retry`: the policy of rules without `retries` (Istio's default unless MeshConfig overrides it);
    `delegates`: finds the VirtualServices that `http[].delegate` names (none: delegating rules are skipped)."""
    routes = []
    for x in expand(vs, delegates):
        raw_matches = items(x.rule, "match")
        matches = [request_match(m, f"{x.field}.match[{j}]") for j, m in enumerate(raw_matches)
                   if _applies(m, caller)]
        if raw_matches and not matches:
            continue
        routes.append(http_route(x.rule, x.field, x.namespace, backends, matches, name=x.name,
                                 retry=retry or default_retry()))
    return routes


def _applies(match: Any, caller: Caller) -> bool:
    if not labels_match(mapping(match, "source_labels"), caller.labels):
        return False
    source_ns = attr(match, "source_namespace")
    if source_ns and source_ns != caller.namespace:
        return False
    gateways = items(match, "gateways")
    return not gateways or "mesh" in gateways


def request_match(m: Any, field_: str) -> pb.RequestMatch:
    ignore_case = bool(attr(m, "ignore_uri_case", default=False))
    out = pb.RequestMatch(
        path=string_match(attr(m, "uri"), f"{field_}.uri", ignore_case=ignore_case),
        method=string_match(attr(m, "method"), f"{field_}.method"),
        authority=string_match(attr(m, "authority"), f"{field_}.authority"),
        scheme=string_match(attr(m, "scheme"), f"{field_}.scheme"),
        port=uint(attr(m, "port"), f"{field_}.port"),
    )
    for name, value in mapping(m, "headers").items():
        if name.lower() not in _IGNORED_HEADER_KEYS:
            out.headers.append(pb.HeaderMatch(name=name.lower(),
                                              value=string_match(value, f"{field_}.headers.{name}")))
    for name, value in mapping(m, "without_headers").items():
        out.headers.append(pb.HeaderMatch(name=name.lower(), invert=True,
                                          value=string_match(value, f"{field_}.withoutHeaders.{name}")))
    for name, value in mapping(m, "query_params").items():
        sm = string_match(value, f"{field_}.queryParams.{name}")
        out.query_params.append(pb.HeaderMatch(name=name, value=sm if sm is not None else pb.StringMatch(exact="")))
    return out


def http_route(rule: Any, field_: str, ns: str, backends: Backends, matches: list[pb.RequestMatch],
               name: str, retry: pb.RetryPolicy) -> pb.Route:
    route = pb.Route(name=attr(rule, "name", default=name), matches=matches)
    route.backends = weighted(items(rule, "route"), f"{field_}.route", ns, backends)
    route.redirect = redirect(attr(rule, "redirect"), f"{field_}.redirect")
    route.direct_response = direct_response(attr(rule, "direct_response"), f"{field_}.directResponse")
    if not route.backends and route.redirect is None and route.direct_response is None:
        raise InvalidRule(f"{field_}: needs route, redirect or directResponse")
    route.timeout_ms = duration_ms(attr(rule, "timeout"), f"{field_}.timeout") or 0
    retries = attr(rule, "retries")
    route.retry = retry if retries is None else retry_policy(retries, f"{field_}.retries")
    route.fault = fault(attr(rule, "fault"), f"{field_}.fault")
    route.mirror = mirror(rule, f"{field_}", ns, backends)
    route.rewrite = rewrite(attr(rule, "rewrite"), f"{field_}.rewrite")
    headers = attr(rule, "headers")
    route.request_headers = header_ops(attr(headers, "request"))
    route.response_headers = header_ops(attr(headers, "response"))
    route.cors = cors(attr(rule, "cors_policy"), f"{field_}.corsPolicy")
    return route


def weighted(destinations: tuple[Any, ...], field_: str, ns: str, backends: Backends) -> list[pb.WeightedDst]:
    out = []
    weights = [uint(attr(d, "weight"), f"{field_}[{i}].weight") for i, d in enumerate(destinations)]
    if len(destinations) == 1:
        weights = [100]
    elif not any(weights):
        weights = [1] * len(destinations)
    for i, (d, weight) in enumerate(zip(destinations, weights, strict=True)):
        dst = attr(d, "destination")
        out.append(backend(dst, f"{field_}[{i}].destination", ns, backends, weight=weight))
        headers = attr(d, "headers")
        out[-1].request_headers = header_ops(attr(headers, "request"))
        out[-1].response_headers = header_ops(attr(headers, "response"))
    return out


def backend(dst: Any, field_: str, ns: str, backends: Backends, *, weight: int) -> pb.WeightedDst:
    host = attr(dst, "host")
    if not host:
        raise InvalidRule(f"{field_}.host: required")
    port = attr(attr(dst, "port"), "number")
    subset = attr(dst, "subset") or ""
    return pb.WeightedDst(
        authority=backends.authority(host, ns, uint(port, f"{field_}.port.number") if port is not None else None),
        weight=weight,
        subset=subset,
        subset_labels=backends.subset_labels(host, ns, subset, f"{field_}.subset") if subset else {},
    )


def retry_policy(retries: Any, field_: str) -> pb.RetryPolicy:
    attempts = uint(attr(retries, "attempts"), f"{field_}.attempts")
    if attempts == 0:
        return pb.RetryPolicy(attempts=0)
    out = pb.RetryPolicy(attempts=attempts,
                         per_try_timeout_ms=duration_ms(attr(retries, "per_try_timeout"),
                                                        f"{field_}.perTryTimeout") or 0)
    retry_on = attr(retries, "retry_on")
    if retry_on is None:
        out.retry_on = list(DEFAULT_RETRY_ON)
        return out
    for part in (p.strip() for p in str(retry_on).split(",")):
        if not part:
            continue
        if part.isascii() and part.isdigit():
            if not 100 <= int(part) <= 599:
                raise InvalidRule(f"{field_}.retryOn: {part} is not an HTTP status code")
            out.retriable_status_codes.append(int(part))
        elif part in RETRY_ON:
            out.retry_on.append(part)
        else:
            raise InvalidRule(f"{field_}.retryOn: unknown condition {part!r} (one of {', '.join(sorted(RETRY_ON))}"
                              " or an HTTP status code)")
    if out.retriable_status_codes and "retriable-status-codes" not in out.retry_on:
        out.retry_on.append("retriable-status-codes")
    return out


def fault(f: Any, field_: str) -> pb.Fault | None:
    if f is None:
        return None
    out = pb.Fault(abort_grpc_status=-1)
    delay, abort = attr(f, "delay"), attr(f, "abort")
    if delay is not None:
        out.delay_ms = duration_ms(attr(delay, "fixed_delay"), f"{field_}.delay.fixedDelay") or 0
        out.delay_percent = _fault_percent(delay, f"{field_}.delay")
    if abort is not None:
        http_status, grpc_status = attr(abort, "http_status"), attr(abort, "grpc_status")
        if http_status is not None:
            if not isinstance(http_status, int) or not 200 <= http_status <= 599:
                raise InvalidRule(f"{field_}.abort.httpStatus: {http_status!r} is not an HTTP status (200..599)")
            out.abort_http_status = http_status
        elif grpc_status is not None:
            out.abort_grpc_status = _grpc_code(grpc_status, f"{field_}.abort.grpcStatus")
        elif attr(abort, "http2_error") is not None:
            out.abort_http2_error = _http2_error(attr(abort, "http2_error"), f"{field_}.abort.http2Error")
        else:
            raise InvalidRule(f"{field_}.abort: set httpStatus, grpcStatus or http2Error")
        out.abort_percent = _fault_percent(abort, f"{field_}.abort")
    return out


HTTP2_ERRORS = ("NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
                "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
                "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED")
"""RFC 9113 error codes by number."""


def _http2_error(value: Any, field_: str) -> str:
    """An HTTP/2 error code name (or its number) as the name."""
    if isinstance(value, int) and 0 <= value < len(HTTP2_ERRORS):
        return HTTP2_ERRORS[value]
    name = str(value).strip().upper()
    if name not in HTTP2_ERRORS:
        raise InvalidRule(f"{field_}: {value!r} is not an HTTP/2 error code ({', '.join(HTTP2_ERRORS)})")
    return name


def _fault_percent(part: Any, field_: str) -> float:
    value = percent(attr(part, "percentage"), f"{field_}.percentage")
    if value is None:  # the deprecated integer `percent`
        value = percent(attr(part, "percent"), f"{field_}.percent")
    return value or 0.0


def _grpc_code(value: Any, field_: str) -> int:
    if isinstance(value, int) and 0 <= value <= 16:
        return value
    code = GRPC_CODES.get(str(value).upper())
    if code is None:
        raise InvalidRule(f"{field_}: unknown gRPC status {value!r}")
    return code


def mirror(rule: Any, field_: str, ns: str, backends: Backends) -> pb.Mirror | None:
    dst, pct, where = attr(rule, "mirror"), attr(rule, "mirror_percentage"), f"{field_}.mirror"
    if dst is None:
        mirrors = items(rule, "mirrors")
        if not mirrors:
            return None
        dst, pct, where = attr(mirrors[0], "destination"), attr(mirrors[0], "percentage"), f"{field_}.mirrors[0]"
    value = percent(pct, f"{field_}.mirrorPercentage")
    if value is None:
        value = percent(attr(rule, "mirror_percent"), f"{field_}.mirrorPercent", default=100.0)
    target = backend(dst, where, ns, backends, weight=100)
    return pb.Mirror(authority=target.authority, subset=target.subset, subset_labels=target.subset_labels,
                     percent=value if value is not None else 100.0)


def rewrite(r: Any, field_: str) -> pb.Rewrite | None:
    if r is None:
        return None
    regex = attr(r, "uri_regex_rewrite")
    out = pb.Rewrite(uri=attr(r, "uri", default=""), authority=attr(r, "authority", default=""))
    if regex is not None:
        pattern = attr(regex, "match", default="")
        check_regex(pattern, f"{field_}.uriRegexRewrite.match")
        out.uri_regex_pattern, out.uri_regex_substitution = pattern, attr(regex, "rewrite", default="")
    return out


def redirect(r: Any, field_: str) -> pb.Redirect | None:
    if r is None:
        return None
    port = attr(r, "port")
    derive = attr(r, "derive_port")
    if derive is not None and str(derive).upper() not in _DERIVE_PORT:
        raise InvalidRule(f"{field_}.derivePort: {derive!r} is not one of {', '.join(_DERIVE_PORT)}")
    return pb.Redirect(
        uri=attr(r, "uri", default=""), authority=attr(r, "authority", default=""),
        port=uint(port, f"{field_}.port"), scheme=attr(r, "scheme", default=""),
        response_code=uint(attr(r, "redirect_code"), f"{field_}.redirectCode", default=301),
        derive_port=_DERIVE_PORT[str(derive).upper()] if derive is not None else pb.DerivePort.UNSET,
    )


_DERIVE_PORT = {"FROM_PROTOCOL_DEFAULT": pb.DerivePort.FROM_PROTOCOL_DEFAULT,
                "FROM_REQUEST_PORT": pb.DerivePort.FROM_REQUEST_PORT}


def direct_response(d: Any, field_: str) -> pb.DirectResponse | None:
    if d is None:
        return None
    status = attr(d, "status")
    if not isinstance(status, int) or not 200 <= status <= 599:
        raise InvalidRule(f"{field_}.status: {status!r} is not an HTTP status (200..599)")
    body = attr(d, "body")
    data = b""
    if isinstance(body, str):
        data = body.encode()
    elif body is not None:
        text, raw = attr(body, "string"), attr(body, "bytes")
        if text is not None:
            data = str(text).encode()
        elif isinstance(raw, bytes):
            data = raw
        elif raw is not None:
            try:
                data = base64.b64decode(str(raw), validate=True)
            except binascii.Error:
                raise InvalidRule(f"{field_}.body.bytes: not base64") from None
    return pb.DirectResponse(status=status, body=data)


def cors(c: Any, field_: str) -> pb.CorsPolicy | None:
    if c is None:
        return None
    origins = [string_match(o, f"{field_}.allowOrigins[{i}]") for i, o in enumerate(items(c, "allow_origins"))]
    origins += [pb.StringMatch(exact=o) for o in items(c, "allow_origin")]
    max_age = duration_ms(attr(c, "max_age"), f"{field_}.maxAge")
    return pb.CorsPolicy(
        allow_origins=[o for o in origins if o is not None],
        allow_methods=list(items(c, "allow_methods")),
        allow_headers=list(items(c, "allow_headers")),
        expose_headers=list(items(c, "expose_headers")),
        max_age_s=(max_age // 1000) if max_age else 0,
        allow_credentials=bool(attr(c, "allow_credentials", default=False)),
    )


# === tcp / tls ===

def l4_routes(vs: Any, kind: str, backends: Backends, caller: Caller) -> list[pb.L4Route]:
    """`tcp[]` or `tls[]` rules -> L4Route, sourceLabels/sourceNamespace/gateways evaluated as for http."""
    ns = vs.metadata.namespace or "default"
    out = []
    for i, rule in enumerate(items(vs.spec, kind)):
        field_ = f"{kind}[{i}]"
        raw = items(rule, "match")
        matches = [pb.L4Match(port=uint(attr(m, "port"), f"{field_}.match[{j}].port"),
                              destination_subnets=list(items(m, "destination_subnets")),
                              sni_hosts=[h.lower() for h in items(m, "sni_hosts")])
                   for j, m in enumerate(raw) if _applies(m, caller)]
        if raw and not matches:
            continue
        if kind == "tls" and not any(m.sni_hosts for m in matches):
            raise InvalidRule(f"{field_}.match: tls routes need sniHosts")
        out.append(pb.L4Route(matches=matches, backends=weighted(items(rule, "route"), f"{field_}.route", ns, backends)))
    return out
