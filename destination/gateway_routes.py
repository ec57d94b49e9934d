"""Gateway API HTTPRoute (mesh use: parentRef to a Service) -> `Route` messages (pure).

Every (rule, match) pair becomes one Route with one match, and the routes of
all HTTPRoutes attached to the Service are sorted by the Gateway API's
precedence: Exact path, then the longest PathPrefix, then RegularExpression;
a method match; more header matches; more query matches; then the oldest
route, then namespace/name, then rule and match order. No `matches` means a
PathPrefix `/`. Defaults: backendRef weight 1, RequestRedirect status 302; a
rule with no usable backend (none listed, all weight 0) and no redirect
answers 500, as the spec requires. Retries: Istio's default policy, or the
experimental `retry` (attempts, codes) when set. `timeouts.request` is the
route timeout, `timeouts.backendRequest` the per-try timeout.

Limits: RequestRedirect `ReplacePrefixMatch` becomes a whole-path redirect
(the proto has no prefix redirect); `URLRewrite` `ReplaceFullPath` becomes a
whole-path regex rewrite.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshlet.api import destination_pb as pb

from .errors import InvalidRule
from .hosts import service_fqdn
from .rules import creation_order
from .values import attr, check_regex, duration_ms, header_ops_from_pairs, items, uint
from .vs_routes import default_retry

_PATH_RANK = {"Exact": 0, "PathPrefix": 1, "RegularExpression": 2}


def http_routes(routes: list[Any], domain: str, *, retry: pb.RetryPolicy | None = None) -> list[pb.Route]:
    keyed: list[tuple[tuple[Any, ...], pb.Route]] = []
    for route in routes:
        ns = route.metadata.namespace or "default"
        for i, rule in enumerate(items(route.spec, "rules")):
            field_ = f"rules[{i}]"
            matches = items(rule, "matches") or (None,)
            for j, m in enumerate(matches):
                match, key = request_match(m, f"{field_}.matches[{j}]")
                name = attr(rule, "name") or f"{route.metadata.name}.{i}"
                out = rule_route(rule, field_, ns, domain, name, retry or default_retry())
                out.matches = [match]
                keyed.append(((*key, creation_order(route), i, j), out))
    return [r for _, r in sorted(keyed, key=lambda kr: kr[0])]


def request_match(m: Any, field_: str) -> tuple[pb.RequestMatch, tuple[int, int, int, int, int]]:
    path = attr(m, "path")
    kind = str(attr(path, "type", default="PathPrefix"))
    value = str(attr(path, "value", default="/"))
    if kind not in _PATH_RANK:
        raise InvalidRule(f"{field_}.path.type: {kind!r} is not Exact, PathPrefix or RegularExpression")
    if kind == "Exact":
        sm = pb.StringMatch(exact=value)
    elif kind == "PathPrefix":
        sm = pb.StringMatch(prefix=value)
    else:
        check_regex(value, f"{field_}.path.value")
        sm = pb.StringMatch(regex=value)
    out = pb.RequestMatch(path=sm)
    out.headers = [_pair(h, f"{field_}.headers[{k}]", lower=True) for k, h in enumerate(items(m, "headers"))]
    out.query_params = [_pair(q, f"{field_}.queryParams[{k}]", lower=False)
                        for k, q in enumerate(items(m, "query_params"))]
    method = attr(m, "method")
    if method is not None:
        out.method = pb.StringMatch(exact=str(method).upper())
    prefix_len = len(value) if kind == "PathPrefix" else 0
    key = (_PATH_RANK[kind], -prefix_len, 0 if method else 1, -len(out.headers), -len(out.query_params))
    return out, key


def _pair(h: Any, field_: str, *, lower: bool) -> pb.HeaderMatch:
    name, value = attr(h, "name"), attr(h, "value", default="")
    if not name:
        raise InvalidRule(f"{field_}.name: required")
    kind = str(attr(h, "type", default="Exact"))
    if kind == "RegularExpression":
        check_regex(value, f"{field_}.value")
        sm = pb.StringMatch(regex=value)
    elif kind == "Exact":
        sm = pb.StringMatch(exact=value)
    else:
        raise InvalidRule(f"{field_}.type: {kind!r} is not Exact or RegularExpression")
    return pb.HeaderMatch(name=name.lower() if lower else name, value=sm)


def rule_route(rule: Any, field_: str, ns: str, domain: str, name: str, default: pb.RetryPolicy) -> pb.Route:
    out = pb.Route(name=name)
    for k, f in enumerate(items(rule, "filters")):
        _apply_filter(out, f, f"{field_}.filters[{k}]", ns, domain)
    backends = []
    for k, ref in enumerate(items(rule, "backend_refs")):
        dst = backend_ref(ref, f"{field_}.backendRefs[{k}]", ns, domain)
        if dst.weight:
            backends.append(dst)
    if out.redirect is None:
        out.backends = backends
        if not backends:
            out.direct_response = pb.DirectResponse(status=500)
    timeouts = attr(rule, "timeouts")
    out.timeout_ms = duration_ms(attr(timeouts, "request"), f"{field_}.timeouts.request") or 0
    out.retry = _retry(attr(rule, "retry"), f"{field_}.retry", default)
    per_try = duration_ms(attr(timeouts, "backend_request"), f"{field_}.timeouts.backendRequest")
    if per_try and out.retry is not None:
        out.retry.per_try_timeout_ms = per_try
    return out


def _retry(retry: Any, field_: str, default: pb.RetryPolicy) -> pb.RetryPolicy:
    """The experimental HTTPRoute `retry` {attempts, codes} (kept as plain data by the model)."""
    if retry is None:
        return default
    get = retry.get if isinstance(retry, Mapping) else (lambda k: attr(retry, k))
    codes = get("codes") or []
    if not isinstance(codes, (list, tuple)):
        raise InvalidRule(f"{field_}.codes: expected a list of HTTP status codes")
    return pb.RetryPolicy(
        attempts=uint(get("attempts"), f"{field_}.attempts", default=1),
        retry_on=["retriable-status-codes"] if codes else ["5xx"],
        retriable_status_codes=[uint(c, f"{field_}.codes") for c in codes])


def backend_ref(ref: Any, field_: str, ns: str, domain: str, *, default_weight: int = 1) -> pb.WeightedDst:
    kind, group = attr(ref, "kind", default="Service"), attr(ref, "group", default="")
    if kind != "Service" or group not in ("", "core"):
        raise InvalidRule(f"{field_}: only Service backends are supported, got {group or 'core'}/{kind}")
    name, port = attr(ref, "name"), attr(ref, "port")
    if not name:
        raise InvalidRule(f"{field_}.name: required")
    if port is None:
        raise InvalidRule(f"{field_}.port: required for a Service backend")
    dst = pb.WeightedDst(
        authority=f"{service_fqdn(name, attr(ref, 'namespace', default=ns), domain)}:{uint(port, f'{field_}.port')}",
        weight=uint(attr(ref, "weight"), f"{field_}.weight", default=default_weight))
    for k, f in enumerate(items(ref, "filters")):
        kind = attr(f, "type")
        if kind == "RequestHeaderModifier":
            dst.request_headers = _modifier(attr(f, "request_header_modifier"))
        elif kind == "ResponseHeaderModifier":
            dst.response_headers = _modifier(attr(f, "response_header_modifier"))
        else:
            raise InvalidRule(f"{field_}.filters[{k}].type: {kind!r} is not supported on a backendRef")
    return dst


def _modifier(m: Any) -> pb.HeaderOps | None:
    return header_ops_from_pairs(items(m, "set"), items(m, "add"), items(m, "remove"))


def _apply_filter(out: pb.Route, f: Any, field_: str, ns: str, domain: str) -> None:
    kind = attr(f, "type")
    if kind == "RequestHeaderModifier":
        out.request_headers = _modifier(attr(f, "request_header_modifier"))
    elif kind == "ResponseHeaderModifier":
        out.response_headers = _modifier(attr(f, "response_header_modifier"))
    elif kind == "RequestRedirect":
        r = attr(f, "request_redirect")
        path = attr(r, "path")
        out.redirect = pb.Redirect(
            scheme=attr(r, "scheme", default=""), authority=attr(r, "hostname", default=""),
            port=uint(attr(r, "port"), f"{field_}.requestRedirect.port"),
            uri=attr(path, "replace_full_path", "replace_prefix_match", default=""),
            response_code=uint(attr(r, "status_code"), f"{field_}.requestRedirect.statusCode", default=302))
    elif kind == "URLRewrite":
        r = attr(f, "url_rewrite")
        path = attr(r, "path")
        out.rewrite = pb.Rewrite(authority=attr(r, "hostname", default=""))
        if attr(path, "type") == "ReplaceFullPath":
            out.rewrite.uri_regex_pattern = "^.*$"
            out.rewrite.uri_regex_substitution = attr(path, "replace_full_path", default="/")
        elif path is not None:
            out.rewrite.uri = attr(path, "replace_prefix_match", default="/")
    elif kind == "RequestMirror":
        m = attr(f, "request_mirror")
        dst = backend_ref(attr(m, "backend_ref"), f"{field_}.requestMirror.backendRef", ns, domain)
        pct = attr(m, "percent")
        fraction = attr(m, "fraction")
        if pct is None and fraction is not None:
            pct = 100.0 * attr(fraction, "numerator", default=0) / (attr(fraction, "denominator", default=100) or 100)
        out.mirror = pb.Mirror(authority=dst.authority, percent=float(100 if pct is None else pct))
    else:
        raise InvalidRule(f"{field_}.type: filter {kind!r} is not supported")
