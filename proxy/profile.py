"""Route configuration of one target as the proxy uses it (pure, frozen), compiled once per
`DestinationProfile` from the control plane.

Regexes are compiled and source conditions (the proxy's own pod labels and namespace) are
decided here, once: selecting a route per request only compares strings.
Protobuf messages are read in `profilewire.compile_profile` only (also reachable here); a bad
field raises `ProfileError` naming it.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .l4routes import NO_L4, L4Routes


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
    abort_h2: int = -1
    """HTTP/2 error code to reset HTTP/2 requests' streams with (-1: none; http2Error; HTTP/1
    requests have no stream to reset and are not aborted)."""


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
    derive: int = 0
    """derivePort: 0 none, 1 FROM_PROTOCOL_DEFAULT (no port: the scheme's), 2 FROM_REQUEST_PORT."""


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


GRPC_RETRY_ON = {"cancelled": 1, "deadline-exceeded": 4, "resource-exhausted": 8, "internal": 13, "unavailable": 14}
"""Istio's gRPC retryOn conditions and the gRPC status each one retries."""


def __getattr__(name: str) -> Any:
    """`compile_profile` and `describe` live in profilewire.py (imported on first use)."""
    if name in ("compile_profile", "describe"):
        from . import profilewire

        return getattr(profilewire, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
