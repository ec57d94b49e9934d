"""security.istio.io PeerAuthentication, AuthorizationPolicy, RequestAuthentication (v1, v1beta1).

The seed's spellings are accepted with a warning naming Istio's field (see
shared/seeds/examples/README.md): PeerAuthentication `mTLS` (= `mtls`),
RequestAuthentication `headers: [Authorization]` (= `fromHeaders: [{name: Authorization,
prefix: "Bearer "}]`; other names become `{name: X}`) and `claimToHeaders` (= `outputClaimToHeaders`).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from meshlet.controller.model.convert import yfield
from meshlet.controller.model.istio_common import (
    PolicyTargetReference,
    WorkloadSelector,
    check_cidr,
    check_duration,
    check_port,
)
from meshlet.controller.model.meta import Resource

SECURITY_VERSIONS = ("security.istio.io/v1beta1",)

MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


# === PeerAuthentication ===

@dataclass(frozen=True)
class PeerMtls:
    mode: MtlsMode = "UNSET"


@dataclass(frozen=True)
class PeerAuthenticationSpec:
    selector: WorkloadSelector | None = None
    mtls: PeerMtls | None = yfield(warn_aliases=("mTLS",), default=None)  # noqa: RUF009 (a field())
    port_level_mtls: dict[int, PeerMtls] = field(default_factory=dict)
    """Container port -> mode. Istio requires a selector for these (`meshlet analyze` warns)."""

    def validate(self) -> Iterable[tuple[str, str]]:
        for port in self.port_level_mtls:
            problem = check_port(port)
            if problem:
                yield f"portLevelMtls.{port}", problem

    @property
    def mode(self) -> MtlsMode:
        return self.mtls.mode if self.mtls is not None else "UNSET"


@dataclass(frozen=True, kw_only=True)
class PeerAuthentication(Resource):
    api_version: ClassVar[str] = "security.istio.io/v1"
    kind: ClassVar[str] = "PeerAuthentication"

    spec: PeerAuthenticationSpec = field(default_factory=PeerAuthenticationSpec)
    status: Any = None


# === AuthorizationPolicy ===

@dataclass(frozen=True)
class Source:
    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()
    not_service_accounts: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()

    def validate(self) -> Iterable[tuple[str, str]]:
        for name in ("ip_blocks", "not_ip_blocks", "remote_ip_blocks", "not_remote_ip_blocks"):
            for i, block in enumerate(getattr(self, name)):
                problem = check_cidr(block)
                if problem:
                    yield f"{_camel(name)}[{i}]", problem
        if (self.service_accounts or self.not_service_accounts) and (self.principals or self.namespaces):
            yield "serviceAccounts", "cannot be combined with principals or namespaces"


@dataclass(frozen=True)
class Operation:
    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()

    def validate(self) -> Iterable[tuple[str, str]]:
        for name in ("ports", "not_ports"):
            for i, port in enumerate(getattr(self, name)):
                problem = check_port(int(port)) if port.isdigit() else f"invalid port {port!r}"
                if problem:
                    yield f"{_camel(name)}[{i}]", problem


@dataclass(frozen=True)
class RuleFrom:
    source: Source


@dataclass(frozen=True)
class RuleTo:
    operation: Operation


@dataclass(frozen=True)
class Condition:
    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()

    def validate(self) -> Iterable[tuple[str, str]]:
        if not self.values and not self.not_values:
            yield "values", "at least one of values and notValues is required"


@dataclass(frozen=True)
class Rule:
    from_: tuple[RuleFrom, ...] = yfield("from", default=())
    to: tuple[RuleTo, ...] = ()
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class ExtensionProvider:
    name: str


@dataclass(frozen=True)
class AuthorizationPolicySpec:
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    rules: tuple[Rule, ...] = ()
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"] = "ALLOW"
    provider: ExtensionProvider | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        if self.action == "CUSTOM" and self.provider is None:
            yield "provider", "action CUSTOM needs a provider"
        if self.action != "CUSTOM" and self.provider is not None:
            yield "provider", "a provider is only allowed with action CUSTOM"
        if self.selector is not None and (self.target_ref is not None or self.target_refs):
            yield "targetRefs", "only one of selector and targetRef(s) may be set"


@dataclass(frozen=True, kw_only=True)
class AuthorizationPolicy(Resource):
    api_version: ClassVar[str] = "security.istio.io/v1"
    kind: ClassVar[str] = "AuthorizationPolicy"

    spec: AuthorizationPolicySpec = field(default_factory=AuthorizationPolicySpec)
    """`spec: {}` = ALLOW with no rules = allow nothing in its scope."""
    status: Any = None


# === RequestAuthentication ===

@dataclass(frozen=True)
class JWTHeader:
    name: str
    prefix: str | None = None


@dataclass(frozen=True)
class ClaimToHeader:
    header: str
    claim: str


def _seed_headers(value: Any) -> list[Any]:
    """The seed's `headers: [Authorization]` as Istio's `fromHeaders` (Authorization carries a bearer token)."""
    if not isinstance(value, list):
        raise TypeError("expected a list of header names")
    out: list[Any] = []
    for item in value:
        if isinstance(item, str):
            out.append({"name": item, "prefix": "Bearer "} if item.lower() == "authorization" else {"name": item})
        else:
            out.append(item)
    return out


@dataclass(frozen=True)
class JWTRule:
    issuer: str
    audiences: tuple[str, ...] = ()
    jwks_uri: str | None = None
    jwks: str | None = None
    from_headers: tuple[JWTHeader, ...] = yfield(warn_aliases=(("headers", _seed_headers),), default=())
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    output_payload_to_header: str | None = None
    forward_original_token: bool = False
    output_claim_to_headers: tuple[ClaimToHeader, ...] = yfield(warn_aliases=("claimToHeaders",), default=())
    timeout: str | None = None
    space_delimited_claims: tuple[str, ...] = ()

    def validate(self) -> Iterable[tuple[str, str]]:
        if not self.issuer:
            yield "issuer", "must not be empty"
        if self.jwks_uri is not None and self.jwks is not None:
            yield "jwks", "only one of jwksUri and jwks may be set"
        if self.jwks_uri is not None and not self.jwks_uri.startswith(("http://", "https://")):
            yield "jwksUri", f"must be an http(s) URL, got {self.jwks_uri!r}"
        if self.timeout is not None:
            problem = check_duration(self.timeout, minimum=0.001)
            if problem:
                yield "timeout", problem


@dataclass(frozen=True)
class RequestAuthenticationSpec:
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    jwt_rules: tuple[JWTRule, ...] = ()

    def validate(self) -> Iterable[tuple[str, str]]:
        issuers: set[str] = set()
        for i, rule in enumerate(self.jwt_rules):
            if rule.issuer in issuers:
                yield f"jwtRules[{i}].issuer", f"duplicate issuer {rule.issuer!r}"
            issuers.add(rule.issuer)


@dataclass(frozen=True, kw_only=True)
class RequestAuthentication(Resource):
    api_version: ClassVar[str] = "security.istio.io/v1"
    kind: ClassVar[str] = "RequestAuthentication"

    spec: RequestAuthenticationSpec = field(default_factory=RequestAuthenticationSpec)
    status: Any = None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)
