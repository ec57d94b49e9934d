"""Tables of `meshlet proxy-config`: pure functions of a proxy's `/config_dump` JSON.

`endpoint_rows`, `route_rows`, `cluster_rows` and `secret_rows` return a
header row and one row per item (lists of cells), tested with canned JSON.
The profile section may use the proxy's own dump (compiled routes: durations
in seconds, a flat traffic policy, retry flags) or the proto JSON spelling
(camelCase, `*_ms` durations, nested policy); both are read.
"""
from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

NO_PROFILE = "no profile"


class DumpError(ValueError):
    """A part of the dump cannot be read (e.g. the certificate)."""


# === helpers over loosely-typed JSON ===

def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def get_field(obj: Any, name: str, default: Any = None) -> Any:
    """Field `name` (snake_case) of a dict, also found under its camelCase spelling."""
    if not isinstance(obj, Mapping):
        return default
    if name in obj:
        return obj[name]
    return obj.get(_camel(name), default)


def _dur(seconds: float) -> str:
    """5.0 -> "5s", 1.5 -> "1.5s", 0.25 -> "250ms", 0 -> "-"."""
    if seconds <= 0:
        return "-"
    if seconds < 1:
        return f"{round(seconds * 1000):d}ms"
    return f"{seconds:g}s"


def _seconds(obj: Any, ms_name: str, s_name: str) -> float:
    """A duration given as `<x>_ms` milliseconds (proto JSON) or `<x>` seconds (the proxy's own dump)."""
    try:
        if get_field(obj, ms_name) is not None:
            return float(get_field(obj, ms_name)) / 1000
        return float(get_field(obj, s_name) or 0)
    except (TypeError, ValueError):
        return 0.0


def _enum(value: Any, prefix: str) -> str:
    text = str(value or "")
    return text.removeprefix(prefix)


def _labels(labels: Any) -> str:
    if not isinstance(labels, Mapping) or not labels:
        return "-"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def profiles(dump: Mapping[str, Any]) -> dict[str, Any]:
    """The dump's profiles by target: a mapping, or a list of profiles keyed by their name."""
    raw = dump.get("profiles")
    if isinstance(raw, Mapping):
        return {str(k): v for k, v in raw.items()}
    if isinstance(raw, list):
        return {str(get_field(p, "fully_qualified_name") or i): p for i, p in enumerate(raw)}
    return {}


def destinations(dump: Mapping[str, Any]) -> dict[str, Any]:
    raw = dump.get("destinations")
    return {str(k): v for k, v in raw.items()} if isinstance(raw, Mapping) else {}


# === endpoints ===

def endpoint_rows(dump: Mapping[str, Any]) -> list[list[str]]:
    rows = [["TARGET", "ENDPOINT", "IDENTITY", "LABELS", "HEALTH"]]
    for target, state in sorted(destinations(dump).items()):
        kind = str(get_field(state, "kind") or "unknown")
        eps = get_field(state, "endpoints") or []
        if not eps:
            rows.append([target, "-", "-", "-", kind if kind != "endpoints" else "no endpoints"])
            continue
        for ep in sorted(eps, key=lambda e: str(get_field(e, "addr"))):
            health = get_field(ep, "health") or ("EJECTED" if get_field(ep, "ejected") else "HEALTHY")
            rows.append([target, str(get_field(ep, "addr") or "?"), str(get_field(ep, "identity") or "plaintext"),
                         _labels(get_field(ep, "pod_labels") or get_field(ep, "labels")), str(health)])
    return rows


# === routes ===

def describe_str(m: Any) -> str:
    if not isinstance(m, Mapping):
        return "*"
    ci = " (ci)" if get_field(m, "ignore_case") else ""
    for kind, fmt in (("exact", "={}"), ("prefix", "^={}"), ("regex", "~={}")):
        if get_field(m, kind) is not None:
            return fmt.format(get_field(m, kind)) + ci
    return "*"


def describe_match(m: Any) -> str:
    """One RequestMatch as `path^=/api & header end-user=jason & method=GET` (AND of its parts)."""
    parts: list[str] = []
    if get_field(m, "path"):
        parts.append("path" + describe_str(get_field(m, "path")))
    for key, word in (("headers", "header"), ("query_params", "query")):
        for h in get_field(m, key) or []:
            name = get_field(h, "name") or "?"
            value = get_field(h, "value")
            text = f"{word} {name}" + (describe_str(value) if value else " present")
            parts.append(("!" if get_field(h, "invert") else "") + text)
    for key in ("method", "authority", "scheme"):
        if get_field(m, key):
            parts.append(key + describe_str(get_field(m, key)))
    if get_field(m, "port"):
        parts.append(f"port={get_field(m, 'port')}")
    if get_field(m, "source_labels"):
        parts.append(f"source {_labels(get_field(m, 'source_labels'))}")
    if get_field(m, "source_namespace"):
        parts.append(f"source ns={get_field(m, 'source_namespace')}")
    return " & ".join(parts) or "*"


def describe_backends(backends: Any) -> str:
    items = [b for b in backends or [] if isinstance(b, Mapping)]
    if not items:
        return "-"
    weights = [int(get_field(b, "weight") or 0) for b in items]
    total = sum(weights)
    out = []
    for b, w in zip(items, weights):
        share = 100.0 * w / total if total else 100.0 / len(items)
        out.append(f"{_target_of(b)} {share:g}%")
    return ", ".join(out)


RETRY_FLAGS = (("on_5xx", "5xx"), ("on_gateway", "gateway-error"), ("on_reset", "reset"),
               ("on_connect", "connect-failure"), ("on_409", "retriable-4xx"))


def describe_retry(retry: Any) -> str:
    attempts = int(get_field(retry, "attempts") or 0)
    if not attempts:
        return "-"
    per_try = _dur(_seconds(retry, "per_try_timeout_ms", "per_try_timeout"))
    conditions = [*map(str, get_field(retry, "retry_on") or []),
                  *(text for flag, text in RETRY_FLAGS if get_field(retry, flag)),
                  *map(str, sorted(get_field(retry, "retriable_status_codes") or get_field(retry, "codes") or []))]
    on = ",".join(conditions)
    return f"{attempts}x" + (f" per {per_try}" if per_try != "-" else "") + (f" on {on}" if on else "")


def _target_of(obj: Any) -> str:
    """`authority[subset]` of a backend or mirror (the mirror may nest its backend)."""
    inner = get_field(obj, "backend") if isinstance(get_field(obj, "backend"), Mapping) else obj
    subset = get_field(inner, "subset")
    return f"{get_field(inner, 'authority') or '?'}{f'[{subset}]' if subset else ''}"


def describe_extras(route: Any) -> str:
    """Fault, mirror, redirect, direct response and rewrite of a route, briefly."""
    out = []
    fault = get_field(route, "fault")
    delay = _seconds(fault, "delay_ms", "delay")
    if delay:
        out.append(f"delay {_dur(delay)} {float(get_field(fault, 'delay_percent') or 0):g}%")
    abort = get_field(fault, "abort_http_status") or get_field(fault, "abort_status")
    grpc = int(get_field(fault, "abort_grpc_status", -1) or -1)
    if abort or grpc > 0:
        code = abort or f"grpc {grpc}"
        out.append(f"abort {code} {float(get_field(fault, 'abort_percent') or 0):g}%")
    mirror = get_field(route, "mirror")
    if isinstance(mirror, Mapping) and mirror:
        out.append(f"mirror {_target_of(mirror)} {float(get_field(mirror, 'percent') or 0):g}%")
    redirect = get_field(route, "redirect")
    if isinstance(redirect, Mapping) and redirect:
        out.append(f"redirect {get_field(redirect, 'response_code') or get_field(redirect, 'status') or 301} "
                   f"{get_field(redirect, 'authority') or ''}{get_field(redirect, 'uri') or ''}".rstrip())
    direct = get_field(route, "direct_response") or get_field(route, "direct")
    if isinstance(direct, Mapping) and direct:
        out.append(f"direct {get_field(direct, 'status') or 200}")
    rewrite = get_field(route, "rewrite")
    if isinstance(rewrite, Mapping) and rewrite:
        out.append("rewrite " + " ".join(str(v) for v in rewrite.values() if v))
    return "; ".join(out) or "-"


def route_rows(dump: Mapping[str, Any]) -> list[list[str]]:
    rows = [["TARGET", "ROUTE", "MATCH", "BACKENDS", "TIMEOUT", "RETRIES", "EXTRA"]]
    profs = profiles(dump)
    for target in sorted(set(profs) | set(destinations(dump))):
        routes = get_field(profs.get(target), "routes") or []
        error = get_field(profs.get(target), "error")
        if target not in profs or not routes:
            rows.append([target, NO_PROFILE if target not in profs else "(no routes)", "*", "-", "-", "-",
                         f"profile error: {error}" if error else "-"])
            continue
        for i, route in enumerate(routes):
            matches = get_field(route, "matches") or []
            rows.append([target, str(get_field(route, "name") or f"#{i}"),
                         " | ".join(describe_match(m) for m in matches) or "*",
                         describe_backends(get_field(route, "backends")),
                         _dur(_seconds(route, "timeout_ms", "timeout")),
                         describe_retry(get_field(route, "retry")), describe_extras(route)])
    return rows


# === clusters ===

POOL_FIELDS = (("max_connections", "maxConnections"), ("max_pending", "http1MaxPendingRequests"),
               ("max_requests_per_connection", "maxRequestsPerConnection"))


def describe_policy(policy: Any) -> list[str]:
    """[load balancer, connection pool, outlier detection, tls] of a TrafficPolicy, '-' when unset.

    Reads the proto JSON shape (loadBalancer, connectionPool, outlierDetection)
    and the proxy's flat compiled shape (lb, max_connections, consecutive_5xx, ...).
    """
    if not isinstance(policy, Mapping):
        return ["-"] * 4
    lb = get_field(policy, "load_balancer")
    lb_text = _enum(get_field(lb, "policy") or get_field(policy, "lb") or "LEAST_REQUEST", "LOAD_BALANCER_POLICY_")
    hashed = get_field(lb, "consistent_hash") or get_field(policy, "hash_key")
    if isinstance(hashed, Mapping) and hashed:
        lb_text = "CONSISTENT_HASH(" + ",".join(f"{k}={v}" for k, v in hashed.items() if v) + ")"
    if get_field(lb, "locality_enabled") or get_field(policy, "locality"):
        lb_text += " +locality"
    pool = get_field(policy, "connection_pool")
    if isinstance(pool, Mapping):
        pool_text = ",".join(f"{k}={v}" for k, v in pool.items() if v)
    else:
        pool_text = ",".join(f"{label}={get_field(policy, name)}" for name, label in POOL_FIELDS
                             if get_field(policy, name))
        connect = _seconds(policy, "connect_timeout_ms", "connect_timeout")
        pool_text += (("," if pool_text else "") + f"connectTimeout={_dur(connect)}") if connect else ""
    od = get_field(policy, "outlier_detection")
    od = od if isinstance(od, Mapping) else policy
    errors_5xx = get_field(od, "consecutive_5xx_errors") or get_field(od, "consecutive_5xx") or 0
    errors_gw = get_field(od, "consecutive_gateway_errors") or get_field(od, "consecutive_gateway") or 0
    od_text = ""
    if errors_5xx or errors_gw:
        eject = _dur(_seconds(od, "base_ejection_time_ms", "base_ejection"))
        od_text = (f"5xx={errors_5xx} gw={errors_gw} eject={eject}"
                   f" max={get_field(od, 'max_ejection_percent') or 0}%")
    tls = get_field(policy, "tls")
    tls_text = _enum(get_field(tls, "mode") or "ISTIO_MUTUAL", "TLS_MODE_")
    return [lb_text, pool_text or "-", od_text or "-", tls_text]


def cluster_rows(dump: Mapping[str, Any]) -> list[list[str]]:
    rows = [["TARGET", "KIND", "ENDPOINTS", "SUBSETS", "LB", "POOL", "OUTLIER", "TLS"]]
    profs, dests = profiles(dump), destinations(dump)
    for target in sorted(set(profs) | set(dests)):
        state, prof = dests.get(target), profs.get(target)
        subsets = ",".join(str(get_field(s, "name")) for s in get_field(prof, "subsets") or []) or "-"
        policy = describe_policy(get_field(prof, "traffic_policy"))
        endpoints = str(len(get_field(state, "endpoints") or []))
        rows.append([target, str(get_field(state, "kind") or "-"), endpoints, subsets, *policy])
    return rows


# === secret ===

def secret_rows(dump: Mapping[str, Any], now: datetime.datetime | None = None) -> list[list[str]]:
    from cryptography import x509

    ident = dump.get("identity") if isinstance(dump.get("identity"), Mapping) else {}
    rows = [["IDENTITY", "STATUS", "SERIAL", "NOT BEFORE", "NOT AFTER", "ISSUER", "TRUST ANCHOR"]]
    pem = (ident or {}).get("cert_pem")
    anchor = str((ident or {}).get("trust_anchor_fingerprint") or "-")
    uri = str((ident or {}).get("uri") or "-")
    if not pem:
        error = (ident or {}).get("last_error")
        rows.append([uri, f"NO CERTIFICATE{f' ({error})' if error else ''}", "-", "-", "-", "-", anchor])
        return rows
    try:
        cert = x509.load_pem_x509_certificates(str(pem).encode())[0]
    except ValueError as e:
        raise DumpError(f"the proxy's certificate cannot be read: {e}") from None
    now = now or datetime.datetime.now(datetime.UTC)
    before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
    status = "VALID" if before <= now < after else ("EXPIRED" if now >= after else "NOT YET VALID")
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uri = ",".join(sans.get_values_for_type(x509.UniformResourceIdentifier)) or uri
    except x509.ExtensionNotFound:
        pass
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    rows.append([uri, status, format(cert.serial_number, "x"), before.strftime(stamp), after.strftime(stamp),
                 cert.issuer.rfc4514_string() or "-", anchor])
    return rows
