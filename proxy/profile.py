"""Route configuration of one target as the proxy uses it (pure, frozen), compiled once per
`DestinationProfile` from the control plane.

Regexes are compiled and source conditions (the proxy's own pod labels and namespace) are
decided here, once: selecting a route per request only compares strings.
Protobuf messages are read in `compile_profile` only; a bad field raises `ProfileError`
naming it.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .l4routes import NO_L4, L4RouteError, L4Routes, compile_l4


class ProfileError(ValueError):
    """A profile the proxy cannot use (the message names the field)."""


class MatchKind(enum.Enum):
    EXACT = "exact"
    PREFIX = "prefix"
    REGEX = "regex"


@dataclass(frozen=True, slots=True)
class StrMatch:
    kind: MatchKind
    value: str
    ignore_case: bool = False
    pattern: re.Pattern[str] | None = None
    test: Callable[[str], bool] = field(init=False, repr=False, compare=False)
    """`test(s)`: whether `s` matches (a closure built once: no dispatch per request)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "test", _tester(self))

    def describe(self) -> dict[str, object]:
        return {self.kind.value: self.value, **({"ignore_case": True} if self.ignore_case else {})}


def _tester(m: StrMatch) -> Callable[[str], bool]:
    v = m.value
    if m.kind is MatchKind.REGEX:
        fullmatch = m.pattern.fullmatch  # type: ignore[union-attr]
        return lambda s: fullmatch(s) is not None
    if m.kind is MatchKind.EXACT:
        return (lambda s: s.lower() == v) if m.ignore_case else v.__eq__
    return (lambda s: s.lower().startswith(v)) if m.ignore_case else (lambda s: s.startswith(v))


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    name: str
    """Lower case."""
    value: StrMatch | None
    invert: bool = False

    def test(self, got: str | None) -> bool:
        ok = got is not None and (self.value is None or self.value.test(got))
        return ok != self.invert


@dataclass(frozen=True, slots=True)
class RequestMatch:
    path: StrMatch | None = None
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[HeaderMatch, ...] = ()
    method: StrMatch | None = None
    authority: StrMatch | None = None
    port: int = 0
    scheme: StrMatch | None = None


@dataclass(frozen=True, slots=True)
class HeaderOps:
    set: tuple[tuple[bytes, bytes], ...] = ()
    add: tuple[tuple[bytes, bytes], ...] = ()
    remove: frozenset[bytes] = frozenset()
    """Lower-case names removed (including the names of `set`)."""

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


class LbPolicy(enum.Enum):
    LEAST_REQUEST = 0
    ROUND_ROBIN = 1
    RANDOM = 2
    PASSTHROUGH = 3
    CONSISTENT_HASH = 4


class TlsMode(enum.Enum):
    ISTIO_MUTUAL = 0
    DISABLE = 1
    SIMPLE = 2
    MUTUAL = 3


@dataclass(frozen=True, slots=True)
class HashKey:
    header: bytes = b""
    cookie: str = ""
    source_ip: bool = False
    query_param: str = ""
    cookie_ttl: float = 0.0
    """With `cookie`: a request without the cookie gets one generated (Set-Cookie, Max-Age=ttl)."""
    cookie_path: str = ""


@dataclass(frozen=True, slots=True)
class ClientTls:
    mode: TlsMode = TlsMode.ISTIO_MUTUAL
    sni: str = ""
    ca_certificates: str = ""
    client_certificate: str = ""
    private_key: str = ""


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    lb: LbPolicy = LbPolicy.LEAST_REQUEST
    hash_key: HashKey | None = None
    locality: bool = False
    max_connections: int = 0
    """tcp.maxConnections: HTTP/1 connections in use (one per request), TCP connections."""
    connect_timeout: float = 0.0
    max_pending: int = 0
    max_requests: int = 0
    """http.http2MaxRequests: active requests (HTTP/1 and HTTP/2); more overflow at once."""
    max_requests_per_connection: int = 0
    h2_upgrade: bool = False
    consecutive_5xx: int = 0
    consecutive_gateway: int = 0
    outlier_interval: float = 10.0
    base_ejection: float = 30.0
    max_ejection_percent: int = 10
    tls: ClientTls = field(default_factory=ClientTls)

    @property
    def limited(self) -> bool:
        return bool(self.max_connections or self.max_pending or self.max_requests)

    @property
    def outlier(self) -> bool:
        return bool(self.consecutive_5xx or self.consecutive_gateway)


DEFAULT_POLICY = TrafficPolicy()


@dataclass(frozen=True, slots=True)
class Backend:
    authority: str
    weight: int = 1
    subset: str = ""
    subset_labels: tuple[tuple[str, str], ...] = ()
    request_ops: HeaderOps = HeaderOps()
    response_ops: HeaderOps = HeaderOps()


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = 0
    per_try_timeout: float = 0.0
    on_5xx: bool = False
    on_gateway: bool = False
    on_reset: bool = False
    on_connect: bool = False
    on_409: bool = False
    codes: frozenset[int] = frozenset()
    grpc_codes: frozenset[int] = frozenset()
    """gRPC statuses retried (retryOn unavailable, cancelled, deadline-exceeded, resource-exhausted, internal)."""

    def status_retriable(self, status: int) -> bool:
        return ((self.on_5xx and status >= 500) or (self.on_gateway and status in (502, 503, 504))
                or (self.on_409 and status == 409) or status in self.codes)


NO_RETRY = Retry()


@dataclass(frozen=True, slots=True)
class Fault:
    delay: float = 0.0
    delay_percent: float = 0.0
    abort_status: int = 0
    abort_percent: float = 0.0
    abort_grpc: int = -1
    """gRPC status to abort gRPC requests with (-1: none; used when abort_status is 0)."""


@dataclass(frozen=True, slots=True)
class Mirror:
    backend: Backend
    percent: float = 100.0


@dataclass(frozen=True, slots=True)
class Rewrite:
    uri: str = ""
    authority: str = ""
    pattern: re.Pattern[str] | None = None
    substitution: str = ""


@dataclass(frozen=True, slots=True)
class Redirect:
    uri: str = ""
    authority: str = ""
    port: int = 0
    scheme: str = ""
    status: int = 301


@dataclass(frozen=True, slots=True)
class DirectResponse:
    status: int
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Cors:
    allow_origins: tuple[StrMatch, ...] = ()
    allow_methods: str = ""
    allow_headers: str = ""
    expose_headers: str = ""
    max_age: int = 0
    allow_credentials: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    name: str = ""
    matches: tuple[RequestMatch, ...] = ()
    """Any of these; empty matches every request."""
    backends: tuple[Backend, ...] = ()
    cum_weights: tuple[int, ...] = ()
    timeout: float = 0.0
    retry: Retry = NO_RETRY
    fault: Fault | None = None
    mirror: Mirror | None = None
    rewrite: Rewrite | None = None
    redirect: Redirect | None = None
    direct: DirectResponse | None = None
    request_ops: HeaderOps = HeaderOps()
    response_ops: HeaderOps = HeaderOps()
    cors: Cors | None = None


@dataclass(frozen=True, slots=True)
class Budget:
    ratio: float = 0.2
    min_per_second: int = 10
    ttl: float = 10.0


@dataclass(frozen=True, slots=True)
class Profile:
    name: str = ""
    routes: tuple[Route, ...] = ()
    budget: Budget = Budget()
    policy: TrafficPolicy = DEFAULT_POLICY
    subsets: tuple[tuple[str, tuple[tuple[str, str], ...], TrafficPolicy], ...] = ()
    header_names: frozenset[str] = frozenset()
    """Header names some route looks at (the only ones collected per request)."""
    needs_query: bool = False
    authorities: frozenset[str] = frozenset()
    """Backend and mirror authorities of the routes (resolved before routing)."""
    routed: bool = False
    """The target has routes (maybe none for this caller): a request matching none gets 404."""
    l4: L4Routes = NO_L4
    """tcp_routes / tls_routes: where opaque connections to the target go."""

    def policy_for(self, subset: str) -> TrafficPolicy:
        for name, _, policy in self.subsets:
            if name == subset:
                return policy
        return self.policy

    def subset_labels(self, subset: str) -> tuple[tuple[str, str], ...]:
        for name, labels, _ in self.subsets:
            if name == subset:
                return labels
        return ()


EMPTY_PROFILE = Profile()


# === compiling from the wire ===

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
    enc = lambda s: s.encode("latin-1", "replace")  # noqa: E731
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


GRPC_RETRY_ON = {"cancelled": 1, "deadline-exceeded": 4, "resource-exhausted": 8, "internal": 13, "unavailable": 14}
"""Istio's gRPC retryOn conditions and the gRPC status each one retries."""


def _retry(m: Any) -> Retry:
    if m is None or not m.attempts:
        return NO_RETRY
    on = set()
    codes = set(int(c) for c in m.retriable_status_codes)
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
    if f is not None and ((f.delay_ms and f.delay_percent > 0) or (f.abort_http_status and f.abort_percent > 0)
                          or grpc_abort):
        if f.abort_http_status and not 200 <= f.abort_http_status <= 599:
            raise ProfileError(f"{where}.fault.abort_http_status: {f.abort_http_status} is not an HTTP status")
        fault = Fault(f.delay_ms / 1000.0, min(f.delay_percent, 100.0), int(f.abort_http_status),
                      min(f.abort_percent, 100.0), int(f.abort_grpc_status) if grpc_abort else -1)
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
        redirect = Redirect(rd.uri, rd.authority, int(rd.port), rd.scheme, int(rd.response_code or 301))
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
