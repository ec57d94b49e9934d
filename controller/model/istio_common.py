"""Pieces shared by the Istio and Gateway API kinds: durations, regexes, string matches, hosts.

Pure helpers other components call too:
- `parse_duration("1.5s") -> 1.5` (Istio/Go duration strings: "500ms", "1m30s", "2h"; ValueError if bad)
- `fqdn("reviews", "bookinfo") -> "reviews.bookinfo.svc.cluster.local"` (Istio's short-name rule)
- `service_of("reviews.bookinfo.svc.cluster.local") -> ("bookinfo", "reviews")`
- `gateway_ref("istio-system/ingress", "default") -> ("istio-system", "ingress")`
- `check_*` functions return None or the reason a value is invalid (for `validate()` hooks).
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from meshlet.controller.model.convert import yfield
from meshlet.controller.model.meta import check_label

CLUSTER_DOMAIN = "cluster.local"
MESH_GATEWAY = "mesh"
"""The reserved gateway name meaning every sidecar of the mesh."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of an Istio duration ("1s", "500ms", "1.5s", "1m", "1h2m3s"); ValueError naming it if invalid."""
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: expected a string such as '1s' or '500ms'")  # noqa: TRY004
    s = text.strip()
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"invalid duration {text!r} (use a number with a unit: '5s', '500ms', '1m', '1h')")
    return total


def check_duration(text: str, *, minimum: float = 0.0) -> str | None:
    """None if `text` is a valid duration of at least `minimum` seconds with millisecond precision."""
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        return str(e)
    if seconds < minimum - 1e-12:
        return f"duration {text!r} must be at least {_show_seconds(minimum)}"
    if abs(seconds * 1000 - round(seconds * 1000)) > 1e-6:
        return f"duration {text!r}: only millisecond precision is supported"
    return None


def _show_seconds(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


_RE2_UNSUPPORTED = (
    (re.compile(r"\(\?<?[=!]"), "lookaround assertions"),
    (re.compile(r"(?<!\\)\\[1-9]"), "backreferences"),
    (re.compile(r"\(\?P=|\\k<"), "named backreferences"),
    (re.compile(r"\(\?>"), "atomic groups"),
    (re.compile(r"[*+?}]\+"), "possessive quantifiers"),
)


def check_regex(pattern: str) -> str | None:
    """None if `pattern` compiles (Python `re`) and uses nothing RE2 (Istio's engine) lacks."""
    if not isinstance(pattern, str):
        return f"invalid regex {pattern!r}: expected a string"
    try:
        re.compile(pattern)
    except re.error as e:
        return f"invalid regex {pattern!r}: {e}"
    for probe, what in _RE2_UNSUPPORTED:
        if probe.search(pattern):
            return f"invalid regex {pattern!r}: {what} are not supported (Istio uses RE2 syntax)"
    return None


def check_port(value: int, what: str = "port") -> str | None:
    if not 1 <= value <= 65535:
        return f"{what} must be between 1 and 65535, got {value}"
    return None


def check_percent(value: float, what: str = "percentage") -> str | None:
    if not 0 <= value <= 100:
        return f"{what} must be between 0 and 100, got {value:g}"
    return None


def check_http_status(value: int) -> str | None:
    if not 200 <= value <= 599:
        return f"HTTP status must be between 200 and 599, got {value}"
    return None


def check_cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"invalid IP address or CIDR block {value!r}"
    return None


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


_HOST = re.compile(r"^(\*|\*\.)?([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*\.?$")


def check_host(host: str, *, wildcard: bool = True) -> str | None:
    """None if `host` is a DNS name (optionally with a left-most `*.` wildcard), `*`, or an IP."""
    if host == "*":
        return None if wildcard else "host '*' is not allowed here"
    if is_ip(host):
        return None
    if len(host) > 255 or not _HOST.match(host) or host.startswith("*") and not host.startswith("*."):
        if host.startswith("*") and not wildcard:
            return f"wildcard host {host!r} is not allowed here"
        return f"invalid host {host!r}: use a DNS name such as 'reviews' or 'reviews.bookinfo.svc.cluster.local'"
    if host.startswith("*") and not wildcard:
        return f"wildcard host {host!r} is not allowed here"
    return None


def fqdn(host: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> str:
    """Istio's rule: a name without a dot is a Service in `namespace`, `<svc>.<ns>.svc` gets the cluster
    domain; anything else (FQDN, `*`, `*.example.com`, IP) is kept (lower-cased, without a trailing dot)."""
    host = host.strip().lower().rstrip(".")
    if host == "*" or host.startswith("*.") or is_ip(host):
        return host
    if "." not in host:
        return f"{host}.{namespace}.svc.{domain}"
    if host.endswith(".svc") and host.count(".") == 2:
        return f"{host}.{domain}"
    return host


def service_of(host: str, domain: str = CLUSTER_DOMAIN) -> tuple[str, str] | None:
    """(namespace, name) of a Service FQDN `<name>.<ns>.svc.<domain>`, else None."""
    suffix = f".svc.{domain}"
    if not host.endswith(suffix):
        return None
    parts = host[: -len(suffix)].split(".")
    return (parts[1], parts[0]) if len(parts) == 2 and all(parts) else None


def host_matches(pattern: str, host: str) -> bool:
    """Whether `host` is covered by `pattern` (`*` = any, `*.example.com` = any subdomain)."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) or host == pattern
    return pattern == host


def gateway_ref(ref: str, namespace: str) -> tuple[str, str]:
    """(namespace, name) of a VirtualService `gateways` entry (`ns/name` or `name` in the rule's namespace)."""
    if "/" in ref:
        ns, _, name = ref.partition("/")
        return ns, name
    return namespace, ref


def check_all(values: Iterable[str], path: str, check: Callable[[str], str | None]) -> Iterable[tuple[str, str]]:
    """(path[i], reason) for each value `check` finds invalid."""
    for i, value in enumerate(values):
        problem = check(value)
        if problem:
            yield f"{path}[{i}]", problem


def check_export_to(values: tuple[str, ...]) -> Iterable[tuple[str, str]]:
    """exportTo: '*' (everywhere, the default), '.' (own namespace) or namespace names; '*' alone."""
    for i, v in enumerate(values):
        if v not in ("*", ".") and check_label(v, "namespace"):
            yield f"exportTo[{i}]", f"invalid exportTo {v!r}: use '*', '.' or a namespace name"
    if "*" in values and len(values) > 1:
        yield "exportTo", "'*' cannot be combined with other values"


# === shared message types ===

@dataclass(frozen=True)
class StringMatch:
    """Exactly one of exact, prefix, regex (all empty = "present", for headers)."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) > 1:
            yield given[1], f"only one of exact, prefix, regex may be set (got {', '.join(given)})"
        if self.regex is not None:
            problem = check_regex(self.regex)
            if problem:
                yield "regex", problem

    @property
    def kind(self) -> str:
        """exact | prefix | regex | present"""
        return next((k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None), "present")


@dataclass(frozen=True)
class Percent:
    value: float = 0.0

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = check_percent(self.value)
        if problem:
            yield "value", problem


@dataclass(frozen=True)
class PortSelector:
    number: int

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = check_port(self.number)
        if problem:
            yield "number", problem


@dataclass(frozen=True)
class WorkloadSelector:
    """istio.type.v1beta1.WorkloadSelector (`matchLabels`): policies, DestinationRule, ProxyConfig, Telemetry."""

    match_labels: dict[str, str] = field(default_factory=dict)

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items())


@dataclass(frozen=True)
class LabelsSelector:
    """networking.v1alpha3.WorkloadSelector (`labels`): Sidecar and ServiceEntry.

    `matchLabels` (the spelling of the other selectors) is accepted with a warning."""

    labels: dict[str, str] = yfield(warn_aliases=("matchLabels",), default_factory=dict)  # noqa: RUF009

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True)
class PolicyTargetReference:
    name: str
    kind: str | None = None
    group: str | None = None
    namespace: str | None = None


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str | None = None
    port: PortSelector | None = None

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = check_host(self.host, wildcard=False)
        if problem:
            yield "host", problem
        if self.subset is not None:
            problem = check_label(self.subset, "subset name")
            if problem:
                yield "subset", problem
