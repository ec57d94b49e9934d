"""`meshlet proxy-config POD [-n NS] routes|endpoints|clusters|secret [-o table|json]`.

Shows what one pod's proxy has received, read from its admin `/config_dump`
(http://<podIP>:15000/config_dump), like `istioctl proxy-config`. The pod's
address and whether it is meshed come from the store. The renderers are pure
functions of the dump (`endpoint_rows`, `route_rows`, `cluster_rows`,
`secret_rows`), so they are tested with canned JSON.

The dump's profile section may use the proto JSON spelling (camelCase) or
snake_case field names; both are read.
"""
from __future__ import annotations

import asyncio
import datetime
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import click
from meshlet.controller.cli._local import fail, resolve_pod
from meshlet.controller.config import LocalConfig
from meshlet.controller.store import StoreError

SECTIONS = ("routes", "endpoints", "clusters", "secret")
PROXY_ANNOTATION = "meshlet.io/proxy"
NO_PROFILE = "no profile"


class ProxyConfigError(RuntimeError):
    """The pod is unknown, not meshed, or its proxy cannot be read; the message says which."""


# === reading the dump ===

def fetch_config_dump(ip: str, port: int, timeout: float = 5.0) -> dict[str, Any]:
    url = f"http://{ip}:{port}/config_dump"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        raise ProxyConfigError(f"proxy admin {url} answered {e.code}") from None
    except (OSError, TimeoutError) as e:
        reason = getattr(e, "reason", None) or e
        raise ProxyConfigError(f"proxy admin {url} is unreachable: {reason}") from None
    try:
        dump = json.loads(body)
    except ValueError as e:
        raise ProxyConfigError(f"proxy admin {url} did not answer JSON: {e}") from None
    if not isinstance(dump, dict):
        raise ProxyConfigError(f"proxy admin {url} answered {type(dump).__name__}, not an object")
    return dump


async def pod_address(cfg: LocalConfig, namespace: str, target: str) -> tuple[str, str]:
    """(pod name, pod IP) of a meshed pod; ProxyConfigError when it is not meshed or has no IP."""
    from meshlet.controller.store import open_local_store

    namespace, name = await resolve_pod(cfg, namespace, target)
    store = open_local_store(cfg, create=False)
    try:
        pods, _ = await store.list("Pod", namespace)
    finally:
        await store.close()
    pod = next((p for p in pods if p.name == name), None)
    if pod is None:
        raise ProxyConfigError(f"pod {namespace}/{name} not found")
    if not pod.metadata.annotations.get(PROXY_ANNOTATION):
        raise ProxyConfigError(f"pod {namespace}/{name} is not meshed: it has no proxy to ask "
                               f"(enable injection for its namespace or workload)")
    ip = pod.status.pod_ip if pod.status else None
    if not ip:
        raise ProxyConfigError(f"pod {namespace}/{name} has no IP yet (phase "
                               f"{pod.status.phase if pod.status else 'Pending'})")
    return name, ip


# === helpers over loosely-typed JSON ===

def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _f(obj: Any, name: str, default: Any = None) -> Any:
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
        if _f(obj, ms_name) is not None:
            return float(_f(obj, ms_name)) / 1000
        return float(_f(obj, s_name) or 0)
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
        return {str(_f(p, "fully_qualified_name") or i): p for i, p in enumerate(raw)}
    return {}


def destinations(dump: Mapping[str, Any]) -> dict[str, Any]:
    raw = dump.get("destinations")
    return {str(k): v for k, v in raw.items()} if isinstance(raw, Mapping) else {}


# === endpoints ===

def endpoint_rows(dump: Mapping[str, Any]) -> list[list[str]]:
    rows = [["TARGET", "ENDPOINT", "IDENTITY", "LABELS", "HEALTH"]]
    for target, state in sorted(destinations(dump).items()):
        kind = str(_f(state, "kind") or "unknown")
        eps = _f(state, "endpoints") or []
        if not eps:
            rows.append([target, "-", "-", "-", kind if kind != "endpoints" else "no endpoints"])
            continue
        for ep in sorted(eps, key=lambda e: str(_f(e, "addr"))):
            health = _f(ep, "health") or ("EJECTED" if _f(ep, "ejected") else "HEALTHY")
            rows.append([target, str(_f(ep, "addr") or "?"), str(_f(ep, "identity") or "plaintext"),
                         _labels(_f(ep, "pod_labels") or _f(ep, "labels")), str(health)])
    return rows


# === routes ===

def describe_str(m: Any) -> str:
    if not isinstance(m, Mapping):
        return "*"
    ci = " (ci)" if _f(m, "ignore_case") else ""
    for kind, fmt in (("exact", "={}"), ("prefix", "^={}"), ("regex", "~={}")):
        if _f(m, kind) is not None:
            return fmt.format(_f(m, kind)) + ci
    return "*"


def describe_match(m: Any) -> str:
    """One RequestMatch as `path^=/api & header end-user=jason & method=GET` (AND of its parts)."""
    parts: list[str] = []
    if _f(m, "path"):
        parts.append("path" + describe_str(_f(m, "path")))
    for key, word in (("headers", "header"), ("query_params", "query")):
        for h in _f(m, key) or []:
            name = _f(h, "name") or "?"
            value = _f(h, "value")
            text = f"{word} {name}" + (describe_str(value) if value else " present")
            parts.append(("!" if _f(h, "invert") else "") + text)
    for key in ("method", "authority", "scheme"):
        if _f(m, key):
            parts.append(key + describe_str(_f(m, key)))
    if _f(m, "port"):
        parts.append(f"port={_f(m, 'port')}")
    if _f(m, "source_labels"):
        parts.append(f"source {_labels(_f(m, 'source_labels'))}")
    if _f(m, "source_namespace"):
        parts.append(f"source ns={_f(m, 'source_namespace')}")
    return " & ".join(parts) or "*"


def describe_backends(backends: Any) -> str:
    items = [b for b in backends or [] if isinstance(b, Mapping)]
    if not items:
        return "-"
    weights = [int(_f(b, "weight") or 0) for b in items]
    total = sum(weights)
    out = []
    for b, w in zip(items, weights):
        share = 100.0 * w / total if total else 100.0 / len(items)
        out.append(f"{_target_of(b)} {share:g}%")
    return ", ".join(out)


RETRY_FLAGS = (("on_5xx", "5xx"), ("on_gateway", "gateway-error"), ("on_reset", "reset"),
               ("on_connect", "connect-failure"), ("on_409", "retriable-4xx"))


def describe_retry(retry: Any) -> str:
    attempts = int(_f(retry, "attempts") or 0)
    if not attempts:
        return "-"
    per_try = _dur(_seconds(retry, "per_try_timeout_ms", "per_try_timeout"))
    conditions = [*map(str, _f(retry, "retry_on") or []), *(text for flag, text in RETRY_FLAGS if _f(retry, flag)),
                  *map(str, sorted(_f(retry, "retriable_status_codes") or _f(retry, "codes") or []))]
    on = ",".join(conditions)
    return f"{attempts}x" + (f" per {per_try}" if per_try != "-" else "") + (f" on {on}" if on else "")


def _target_of(obj: Any) -> str:
    """`authority[subset]` of a backend or mirror (the mirror may nest its backend)."""
    inner = _f(obj, "backend") if isinstance(_f(obj, "backend"), Mapping) else obj
    subset = _f(inner, "subset")
    return f"{_f(inner, 'authority') or '?'}{f'[{subset}]' if subset else ''}"


def describe_extras(route: Any) -> str:
    """Fault, mirror, redirect, direct response and rewrite of a route, briefly."""
    out = []
    fault = _f(route, "fault")
    delay = _seconds(fault, "delay_ms", "delay")
    if delay:
        out.append(f"delay {_dur(delay)} {float(_f(fault, 'delay_percent') or 0):g}%")
    abort = _f(fault, "abort_http_status") or _f(fault, "abort_status")
    grpc = int(_f(fault, "abort_grpc_status", -1) or -1)
    if abort or grpc > 0:
        code = abort or f"grpc {grpc}"
        out.append(f"abort {code} {float(_f(fault, 'abort_percent') or 0):g}%")
    mirror = _f(route, "mirror")
    if isinstance(mirror, Mapping) and mirror:
        out.append(f"mirror {_target_of(mirror)} {float(_f(mirror, 'percent') or 0):g}%")
    redirect = _f(route, "redirect")
    if isinstance(redirect, Mapping) and redirect:
        out.append(f"redirect {_f(redirect, 'response_code') or _f(redirect, 'status') or 301} "
                   f"{_f(redirect, 'authority') or ''}{_f(redirect, 'uri') or ''}".rstrip())
    direct = _f(route, "direct_response") or _f(route, "direct")
    if isinstance(direct, Mapping) and direct:
        out.append(f"direct {_f(direct, 'status') or 200}")
    rewrite = _f(route, "rewrite")
    if isinstance(rewrite, Mapping) and rewrite:
        out.append("rewrite " + " ".join(str(v) for v in rewrite.values() if v))
    return "; ".join(out) or "-"


def route_rows(dump: Mapping[str, Any]) -> list[list[str]]:
    rows = [["TARGET", "ROUTE", "MATCH", "BACKENDS", "TIMEOUT", "RETRIES", "EXTRA"]]
    profs = profiles(dump)
    for target in sorted(set(profs) | set(destinations(dump))):
        routes = _f(profs.get(target), "routes") or []
        error = _f(profs.get(target), "error")
        if target not in profs or not routes:
            rows.append([target, NO_PROFILE if target not in profs else "(no routes)", "*", "-", "-", "-",
                         f"profile error: {error}" if error else "-"])
            continue
        for i, route in enumerate(routes):
            matches = _f(route, "matches") or []
            rows.append([target, str(_f(route, "name") or f"#{i}"),
                         " | ".join(describe_match(m) for m in matches) or "*",
                         describe_backends(_f(route, "backends")), _dur(_seconds(route, "timeout_ms", "timeout")),
                         describe_retry(_f(route, "retry")), describe_extras(route)])
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
    lb = _f(policy, "load_balancer")
    lb_text = _enum(_f(lb, "policy") or _f(policy, "lb") or "LEAST_REQUEST", "LOAD_BALANCER_POLICY_")
    hashed = _f(lb, "consistent_hash") or _f(policy, "hash_key")
    if isinstance(hashed, Mapping) and hashed:
        lb_text = "CONSISTENT_HASH(" + ",".join(f"{k}={v}" for k, v in hashed.items() if v) + ")"
    if _f(lb, "locality_enabled") or _f(policy, "locality"):
        lb_text += " +locality"
    pool = _f(policy, "connection_pool")
    if isinstance(pool, Mapping):
        pool_text = ",".join(f"{k}={v}" for k, v in pool.items() if v)
    else:
        pool_text = ",".join(f"{label}={_f(policy, name)}" for name, label in POOL_FIELDS if _f(policy, name))
        connect = _seconds(policy, "connect_timeout_ms", "connect_timeout")
        pool_text += (("," if pool_text else "") + f"connectTimeout={_dur(connect)}") if connect else ""
    od = _f(policy, "outlier_detection")
    od = od if isinstance(od, Mapping) else policy
    errors_5xx = _f(od, "consecutive_5xx_errors") or _f(od, "consecutive_5xx") or 0
    errors_gw = _f(od, "consecutive_gateway_errors") or _f(od, "consecutive_gateway") or 0
    od_text = ""
    if errors_5xx or errors_gw:
        od_text = (f"5xx={errors_5xx} gw={errors_gw} eject={_dur(_seconds(od, 'base_ejection_time_ms', 'base_ejection'))}"
                   f" max={_f(od, 'max_ejection_percent') or 0}%")
    tls = _f(policy, "tls")
    tls_text = _enum(_f(tls, "mode") or "ISTIO_MUTUAL", "TLS_MODE_")
    return [lb_text, pool_text or "-", od_text or "-", tls_text]


def cluster_rows(dump: Mapping[str, Any]) -> list[list[str]]:
    rows = [["TARGET", "KIND", "ENDPOINTS", "SUBSETS", "LB", "POOL", "OUTLIER", "TLS"]]
    profs, dests = profiles(dump), destinations(dump)
    for target in sorted(set(profs) | set(dests)):
        state, prof = dests.get(target), profs.get(target)
        subsets = ",".join(str(_f(s, "name")) for s in _f(prof, "subsets") or []) or "-"
        policy = describe_policy(_f(prof, "traffic_policy"))
        rows.append([target, str(_f(state, "kind") or "-"), str(len(_f(state, "endpoints") or [])), subsets,
                     *policy])
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
        raise ProxyConfigError(f"the proxy's certificate cannot be read: {e}") from None
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


RENDERERS = {"routes": route_rows, "endpoints": endpoint_rows, "clusters": cluster_rows, "secret": secret_rows}


def raw_section(dump: Mapping[str, Any], section: str) -> Any:
    """What `-o json` prints for a section."""
    if section == "endpoints":
        return destinations(dump)
    if section == "routes":
        return profiles(dump)
    if section == "clusters":
        profs, dests = profiles(dump), destinations(dump)
        return {t: {"kind": _f(dests.get(t), "kind"), "endpoints": len(_f(dests.get(t), "endpoints") or []),
                    "traffic_policy": _f(profs.get(t), "traffic_policy"),
                    "port_traffic_policies": _f(profs.get(t), "port_traffic_policies"),
                    "subsets": _f(profs.get(t), "subsets")}
                for t in sorted(set(profs) | set(dests))}
    return dump.get("identity") or {}


def render(dump: Mapping[str, Any], section: str) -> str:
    from meshlet.controller.cli.get import column_widths, format_rows

    rows = RENDERERS[section](dump)
    return format_rows(rows, column_widths(rows))


@click.command("proxy-config")
@click.argument("pod")
@click.argument("section", type=click.Choice(SECTIONS))
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of the pod.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds to wait for the proxy.")
@click.option("--admin-port", type=int, default=None, hidden=True, help="Proxy admin port (default 15000).")
@click.pass_obj
def proxy_config(cfg: LocalConfig, pod: str, section: str, namespace: str, output: str, timeout: float,
                 admin_port: int | None) -> None:
    """What POD's proxy has received: `proxy-config productpage-v1-xxx -n bookinfo routes`.

    POD may be a pod name or deploy/NAME. Sections: routes (per target: matches,
    backends and weights, timeout, retries), endpoints, clusters (targets and
    their traffic policy), secret (the workload certificate).
    """
    try:
        _, ip = asyncio.run(pod_address(cfg, namespace, pod))
        dump = fetch_config_dump(ip, admin_port or cfg.proxy_ports.admin, timeout)
        if output == "json":
            click.echo(json.dumps(raw_section(dump, section), indent=2, sort_keys=True))
        else:
            click.echo(render(dump, section))
    except ProxyConfigError as e:
        fail(str(e))
    except StoreError as e:
        fail(f"cannot read the store: {e}")

