"""The actions of a VirtualService HTTP rule: redirect, directResponse, rewrite, retries, fault, mirror, CORS.

Split from `istio_virtualservice` (which re-exports nothing: import these from here).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from meshlet.controller.model.istio_common import (
    Destination,
    Percent,
    StringMatch,
    check_duration,
    check_http_status,
    check_percent,
    check_port,
    check_regex,
)

GRPC_CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
              "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
              "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")
RETRY_ON = ("5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
            "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers", "http3-post-connect-failure",
            "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable")
"""Envoy's retry policies Istio passes through (plus bare HTTP status codes)."""


def _duration(value: str | None, path: str, minimum: float = 0.0) -> Iterable[tuple[str, str]]:
    if value is not None:
        problem = check_duration(value, minimum=minimum)
        if problem:
            yield path, problem


@dataclass(frozen=True)
class HTTPRedirect:
    uri: str | None = None
    authority: str | None = None
    port: int | None = None
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirect_code: int | None = None
    """Default 301."""

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.port is not None and self.derive_port is not None:
            yield "derivePort", "only one of port and derivePort may be set"
        if self.port is not None:
            problem = check_port(self.port)
            if problem:
                yield "port", problem
        if self.redirect_code is not None and not 300 <= self.redirect_code <= 399:
            yield "redirectCode", f"must be a 3xx status, got {self.redirect_code}"


@dataclass(frozen=True)
class HTTPBody:
    string: str | None = None
    bytes: str | None = None
    """Base64 of the body."""


@dataclass(frozen=True)
class HTTPDirectResponse:
    status: int
    body: HTTPBody | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if not 200 <= self.status <= 599:
            yield "status", f"must be between 200 and 599, got {self.status}"


@dataclass(frozen=True)
class Delegate:
    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class RegexRewrite:
    match: str
    rewrite: str

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = check_regex(self.match)
        if problem:
            yield "match", problem


@dataclass(frozen=True)
class HTTPRewrite:
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.uri is not None and self.uri_regex_rewrite is not None:
            yield "uriRegexRewrite", "only one of uri and uriRegexRewrite may be set"


@dataclass(frozen=True)
class HTTPRetry:
    attempts: int | None = None
    """Retries after the first try (0 disables retries)."""
    per_try_timeout: str | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.attempts is not None and self.attempts < 0:
            yield "attempts", f"must be 0 or more, got {self.attempts}"
        yield from _duration(self.per_try_timeout, "perTryTimeout", 0.001)
        yield from _duration(self.backoff, "backoff", 0.001)
        for policy in (self.retry_on or "").split(","):
            policy = policy.strip()
            if not policy:
                continue
            if policy.isdigit():
                problem = check_http_status(int(policy))
                if problem:
                    yield "retryOn", problem
            elif policy not in RETRY_ON:
                yield "retryOn", f"unknown retry policy {policy!r}; use HTTP status codes or {', '.join(RETRY_ON)}"

    def retry_policies(self) -> list[str]:
        return [p.strip() for p in (self.retry_on or "").split(",") if p.strip()]


@dataclass(frozen=True)
class Delay:
    fixed_delay: str | None = None
    percentage: Percent | None = None
    percent: int | None = None
    """Deprecated integer percentage (use percentage.value)."""
    exponential_delay: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.fixed_delay is None and self.exponential_delay is None:
            yield "fixedDelay", "missing required field"
        yield from _duration(self.fixed_delay, "fixedDelay", 0.001)
        yield from _duration(self.exponential_delay, "exponentialDelay", 0.001)
        if self.percent is not None:
            problem = check_percent(self.percent, "percent")
            if problem:
                yield "percent", problem


@dataclass(frozen=True)
class Abort:
    http_status: int | None = None
    grpc_status: str | int | None = None
    """A gRPC status name ("UNAVAILABLE") or number (14)."""
    http2_error: str | None = None
    percentage: Percent | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        given = [n for n, v in (("httpStatus", self.http_status), ("grpcStatus", self.grpc_status),
                                ("http2Error", self.http2_error)) if v is not None]
        if not given:
            yield "httpStatus", "one of httpStatus, grpcStatus, http2Error is required"
        elif len(given) > 1:
            yield given[1], f"only one of httpStatus, grpcStatus, http2Error may be set (got {', '.join(given)})"
        if self.http_status is not None:
            problem = check_http_status(self.http_status)
            if problem:
                yield "httpStatus", problem
        if isinstance(self.grpc_status, int) and not 0 <= self.grpc_status <= 16:
            yield "grpcStatus", f"must be a gRPC code between 0 and 16, got {self.grpc_status}"
        elif isinstance(self.grpc_status, str) and self.grpc_status not in GRPC_CODES:
            yield "grpcStatus", f"must be one of {', '.join(GRPC_CODES)}; got {self.grpc_status!r}"

    @property
    def grpc_code(self) -> int | None:
        if isinstance(self.grpc_status, str):
            return GRPC_CODES.index(self.grpc_status)
        return self.grpc_status


@dataclass(frozen=True)
class HTTPFaultInjection:
    delay: Delay | None = None
    abort: Abort | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.delay is None and self.abort is None:
            yield "delay", "a fault needs a delay or an abort"


@dataclass(frozen=True)
class HTTPMirrorPolicy:
    destination: Destination
    percentage: Percent | None = None


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: tuple[StringMatch, ...] = ()
    allow_origin: tuple[str, ...] = ()
    """Deprecated exact origins (use allowOrigins)."""
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: str | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        yield from _duration(self.max_age, "maxAge")
