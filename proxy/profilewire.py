"""Compiling a `destination_pb.DestinationProfile` from the wire into the proxy's frozen
`profile.Profile` (regexes compiled, source conditions decided for this pod, bad fields
rejected with `ProfileError` naming them), and describing a profile as JSON values."""
from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

from .l4routes import L4RouteError, compile_l4
from .profile import (
    DEFAULT_POLICY,
    GRPC_RETRY_ON,
    NO_RETRY,
    Backend,
    Budget,
    ClientTls,
    Cors,
    DirectResponse,
    Fault,
    HashKey,
    HeaderMatch,
    HeaderOps,
    LbPolicy,
    MatchKind,
    Mirror,
    Profile,
    ProfileError,
    Redirect,
    RequestMatch,
    Retry,
    Rewrite,
    Route,
    StrMatch,
    TlsMode,
    TrafficPolicy,
)

__all__ = ["HTTP2_ERRORS", "compile_profile", "describe"]

HTTP2_ERRORS = ("NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
                "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
                "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED")
"""RFC 9113 error codes by number (a fault's `abort_http2_error` names one)."""


def _str(m: Any, where: str) -> StrMatch | None:
    if m is None:
        return None
    import betterproto2

    kind, value = betterproto2.which_one_of(m, "kind")
    if not kind:
        return None
    ic = bool(m.ignore_case)
    if kind == "regex":
        try:
            pattern = re.compile(value, re.IGNORECASE if ic else 0)
        except re.error as e:
            raise ProfileError(f"{where}.regex: invalid regular expression {value!r}: {e}") from None
        return StrMatch(MatchKind.REGEX, value, ic, pattern)
    return StrMatch(MatchKind(kind), value.lower() if ic else value, ic)


def _headers(items: Any, where: str, lower: bool = True) -> tuple[HeaderMatch, ...]:
    out = []
    for i, h in enumerate(items):
        if not h.name:
            raise ProfileError(f"{where}[{i}].name: empty")
        out.append(HeaderMatch(h.name.lower() if lower else h.name, _str(h.value, f"{where}[{i}].value"),
                               bool(h.invert)))
    return tuple(out)


def _ops(m: Any) -> HeaderOps:
    if m is None:
        return HeaderOps()
    enc = lambda s: s.encode("latin-1", "replace")
    set_ = tuple((enc(k.lower()), enc(v)) for k, v in sorted(m.set.items()))
    add = tuple((enc(k.lower()), enc(v)) for k, v in sorted(m.add.items()))
    remove = frozenset(enc(n.lower()) for n in m.remove) | frozenset(k for k, _ in set_)
    return HeaderOps(set_, add, remove)


def _policy(m: Any) -> TrafficPolicy:
    if m is None:
        return DEFAULT_POLICY
    kw: dict[str, Any] = {}
    lb = m.load_balancer
    if lb is not None:
        kw["lb"] = LbPolicy(int(lb.policy))
        kw["locality"] = bool(lb.locality_enabled)
        ch = lb.consistent_hash
        if ch is not None:
            import betterproto2

            key, value = betterproto2.which_one_of(ch, "key")
            kw["hash_key"] = HashKey(
                header=value.lower().encode("latin-1") if key == "http_header_name" else b"",
                cookie=value if key == "http_cookie_name" else "",
                source_ip=key == "use_source_ip" and bool(value),
                query_param=value if key == "http_query_parameter_name" else "",
                cookie_ttl=ch.cookie_ttl_ms / 1000.0 if key == "http_cookie_name" else 0.0,
                cookie_path=getattr(ch, "cookie_path", "") if key == "http_cookie_name" else "")
    cp = m.connection_pool
    if cp is not None:
        kw.update(max_connections=cp.max_connections, connect_timeout=cp.connect_timeout_ms / 1000.0,
                  max_pending=cp.http1_max_pending_requests, max_requests=cp.http2_max_requests,
                  max_requests_per_connection=cp.max_requests_per_connection, h2_upgrade=bool(cp.h2_upgrade))
    od = m.outlier_detection
    if od is not None:
        kw.update(consecutive_5xx=od.consecutive_5xx_errors, consecutive_gateway=od.consecutive_gateway_errors)
        if od.interval_ms:
            kw["outlier_interval"] = od.interval_ms / 1000.0
        if od.base_ejection_time_ms:
            kw["base_ejection"] = od.base_ejection_time_ms / 1000.0
        if od.max_ejection_percent:
            kw["max_ejection_percent"] = min(int(od.max_ejection_percent), 100)
    t = m.tls
    if t is not None:
        kw["tls"] = ClientTls(TlsMode(int(t.mode)), t.sni, t.ca_certificates, t.client_certificate, t.private_key)
    return TrafficPolicy(**kw)


def _backend(m: Any, where: str) -> Backend:
    if not m.authority:
        raise ProfileError(f"{where}.authority: empty")
    return Backend(m.authority.lower(), int(m.weight), m.subset, tuple(sorted(m.subset_labels.items())),
                   _ops(m.request_headers), _ops(m.response_headers))


def _retry(m: Any) -> Retry:
    if m is None or not m.attempts:
        return NO_RETRY
    on = set()
    codes = {int(c) for c in m.retriable_status_codes}
    for cond in m.retry_on:
        cond = cond.strip()
        if cond.isdigit():
            codes.add(int(cond))
        else:
            on.add(cond)
    return Retry(attempts=int(m.attempts), per_try_timeout=m.per_try_timeout_ms / 1000.0,
                 on_5xx="5xx" in on, on_gateway="gateway-error" in on,
                 on_reset="reset" in on or "5xx" in on, on_connect="connect-failure" in on or "5xx" in on,
                 on_409="retriable-4xx" in on, codes=frozenset(codes), grpc_codes=frozenset(c for n, c in GRPC_RETRY_ON.items() if n in on))


def _route(m: Any, i: int, source_labels: Mapping[str, str], source_namespace: str) -> Route | None:
    where = f"routes[{i}]"
    matches = []
    for j, rm in enumerate(m.matches):
        w = f"{where}.matches[{j}]"
        if any(source_labels.get(k) != v for k, v in rm.source_labels.items()):
            continue  # this proxy's pod can never match: decided now
        if rm.source_namespace and rm.source_namespace != source_namespace:
            continue
        matches.append(RequestMatch(
            path=_str(rm.path, f"{w}.path"), headers=_headers(rm.headers, f"{w}.headers"),
            query_params=_headers(rm.query_params, f"{w}.query_params", lower=False),
            method=_str(rm.method, f"{w}.method"), authority=_str(rm.authority, f"{w}.authority"),
            port=int(rm.port), scheme=_str(rm.scheme, f"{w}.scheme")))
    if m.matches and not matches:
        return None
    backends = tuple(_backend(b, f"{where}.backends[{k}]") for k, b in enumerate(m.backends))
    if len(backends) == 1 and backends[0].weight == 0:
        backends = (Backend(backends[0].authority, 1, backends[0].subset, backends[0].subset_labels,
                            backends[0].request_ops, backends[0].response_ops),)
    cum, total = [], 0
    for b in backends:
        total += b.weight
        cum.append(total)
    if backends and total == 0:
        raise ProfileError(f"{where}.backends: every weight is 0")
    f = m.fault
    fault = None
    grpc_abort = f is not None and not f.abort_http_status and 0 <= f.abort_grpc_status <= 16 and f.abort_percent > 0
    h2_abort = f is not None and not f.abort_http_status and not grpc_abort and bool(f.abort_http2_error) \
        and f.abort_percent > 0
    if f is not None and ((f.delay_ms and f.delay_percent > 0) or (f.abort_http_status and f.abort_percent > 0)
                          or grpc_abort or h2_abort):
        if f.abort_http_status and not 200 <= f.abort_http_status <= 599:
            raise ProfileError(f"{where}.fault.abort_http_status: {f.abort_http_status} is not an HTTP status")
        h2_code = -1
        if h2_abort:
            name = f.abort_http2_error.strip().upper()
            if name not in HTTP2_ERRORS:
                raise ProfileError(f"{where}.fault.abort_http2_error: {f.abort_http2_error!r} is not an HTTP/2 error")
            h2_code = HTTP2_ERRORS.index(name)
        fault = Fault(f.delay_ms / 1000.0, min(f.delay_percent, 100.0), int(f.abort_http_status),
                      min(f.abort_percent, 100.0), int(f.abort_grpc_status) if grpc_abort else -1, h2_code)
    mirror = None
    if m.mirror is not None and m.mirror.authority and m.mirror.percent > 0:
        mm = m.mirror
        mirror = Mirror(Backend(mm.authority.lower(), 1, mm.subset, tuple(sorted(mm.subset_labels.items()))),
                        min(mm.percent, 100.0))
    rewrite = None
    if m.rewrite is not None and (m.rewrite.uri or m.rewrite.authority or m.rewrite.uri_regex_pattern):
        rw = m.rewrite
        pattern = None
        if rw.uri_regex_pattern:
            try:
                pattern = re.compile(rw.uri_regex_pattern)
            except re.error as e:
                raise ProfileError(f"{where}.rewrite.uri_regex_pattern: {e}") from None
        rewrite = Rewrite(rw.uri, rw.authority, pattern, _re_sub(rw.uri_regex_substitution))
    redirect = None
    if m.redirect is not None:
        rd = m.redirect
        redirect = Redirect(rd.uri, rd.authority, int(rd.port), rd.scheme, int(rd.response_code or 301),
                            int(rd.derive_port))
    direct = None
    if m.direct_response is not None and m.direct_response.status:
        direct = DirectResponse(int(m.direct_response.status), bytes(m.direct_response.body))
    if not backends and redirect is None and direct is None:
        raise ProfileError(f"{where}: no backends, redirect or direct_response")
    cors = None
    if m.cors is not None:
        c = m.cors
        cors = Cors(tuple(s for k, o in enumerate(c.allow_origins)
                          if (s := _str(o, f"{where}.cors.allow_origins[{k}]")) is not None),
                    ",".join(c.allow_methods), ",".join(c.allow_headers), ",".join(c.expose_headers),
                    int(c.max_age_s), bool(c.allow_credentials))
    return Route(name=m.name or f"route-{i}", matches=tuple(matches), backends=backends, cum_weights=tuple(cum),
                 timeout=m.timeout_ms / 1000.0, retry=_retry(m.retry), fault=fault, mirror=mirror,
                 rewrite=rewrite, redirect=redirect, direct=direct, request_ops=_ops(m.request_headers),
                 response_ops=_ops(m.response_headers), cors=cors)


def _re_sub(s: str) -> str:
    """RE2/Envoy substitution (\\1) → Python's (\\g<1>)."""
    return re.sub(r"\\(\d)", r"\\g<\1>", s)


def compile_profile(m: Any, source_labels: Mapping[str, str], source_namespace: str) -> Profile:
    """A `destination_pb.DestinationProfile` as a `Profile` for a proxy of the given pod."""
    routes = tuple(r for i, rm in enumerate(m.routes)
                   if (r := _route(rm, i, source_labels, source_namespace)) is not None)
    budget = Budget()
    if m.retry_budget is not None:
        rb = m.retry_budget
        budget = Budget(max(float(rb.retry_ratio), 0.0), int(rb.min_retries_per_second),
                        rb.ttl_ms / 1000.0 if rb.ttl_ms else 10.0)
    policy = _policy(m.traffic_policy)
    subsets = tuple((s.name, tuple(sorted(s.labels.items())),
                     _merge(policy, _policy(s.traffic_policy)) if s.traffic_policy is not None else policy)
                    for s in m.subsets)
    names = frozenset(h.name for r in routes for rm in r.matches for h in rm.headers)
    if any(r.cors for r in routes):
        names |= {"origin", "access-control-request-method"}
    try:
        l4 = compile_l4(m, source_labels)
    except L4RouteError as e:
        raise ProfileError(str(e)) from None
    return Profile(name=m.fully_qualified_name, routes=routes, l4=l4, budget=budget, policy=policy, subsets=subsets,
                   header_names=names, needs_query=any(rm.query_params for r in routes for rm in r.matches),
                   routed=bool(m.routes),
                   authorities=frozenset(b.authority for r in routes for b in r.backends)
                   | frozenset(r.mirror.backend.authority for r in routes if r.mirror is not None))


def _merge(base: TrafficPolicy, over: TrafficPolicy) -> TrafficPolicy:
    """A subset's policy: its own settings, the target's where it leaves the default."""
    kw = {}
    for name in TrafficPolicy.__dataclass_fields__:
        v = getattr(over, name)
        kw[name] = v if v != getattr(DEFAULT_POLICY, name) else getattr(base, name)
    return TrafficPolicy(**kw)


def describe(p: Profile) -> dict[str, object]:
    """The profile as JSON values (for /config_dump and `meshlet proxy-config`)."""
    return {"name": p.name, "routed": p.routed, "routes": [_jsonable(r) for r in p.routes],
            "retry_budget": _jsonable(p.budget), "traffic_policy": _jsonable(p.policy),
            "subsets": [{"name": n, "labels": dict(labels), "traffic_policy": _jsonable(pol)}
                        for n, labels, pol in p.subsets], **(p.l4.describe() if p.l4 else {})}


def _jsonable(v: Any) -> Any:
    if isinstance(v, StrMatch):
        return v.describe()
    if hasattr(v, "__dataclass_fields__"):
        return {k: _jsonable(getattr(v, k)) for k in v.__dataclass_fields__
                if k != "cum_weights" and getattr(v, k) not in (None, (), "", frozenset())}
    if isinstance(v, enum.Enum):
        return v.name
    if isinstance(v, re.Pattern):
        return v.pattern
    if isinstance(v, bytes):
        return v.decode("latin-1")
    if isinstance(v, (tuple, list, frozenset)):
        return [_jsonable(x) for x in v]
    return v
