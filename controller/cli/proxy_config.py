"""`meshlet proxy-config POD [-n NS] routes|endpoints|clusters|secret [-o table|json]`.

Shows what one pod's proxy has received, read from its admin `/config_dump`
(http://<podIP>:15000/config_dump), like `istioctl proxy-config`. The pod's
address and whether it is meshed come from the store; the tables are pure
functions of the dump in `_proxy_tables`.
"""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import click
from meshlet.controller.cli._local import fail, resolve_pod
from meshlet.controller.cli._proxy_tables import (
    DumpError,
    cluster_rows,
    destinations,
    endpoint_rows,
    get_field,
    profiles,
    route_rows,
    secret_rows,
)
from meshlet.controller.config import LocalConfig
from meshlet.controller.store import StoreError

SECTIONS = ("routes", "endpoints", "clusters", "secret")
PROXY_ANNOTATION = "meshlet.io/proxy"


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


RENDERERS = {"routes": route_rows, "endpoints": endpoint_rows, "clusters": cluster_rows, "secret": secret_rows}


def raw_section(dump: Mapping[str, Any], section: str) -> Any:
    """What `-o json` prints for a section."""
    if section == "endpoints":
        return destinations(dump)
    if section == "routes":
        return profiles(dump)
    if section == "clusters":
        profs, dests = profiles(dump), destinations(dump)
        return {t: {"kind": get_field(dests.get(t), "kind"),
                    "endpoints": len(get_field(dests.get(t), "endpoints") or []),
                    **{key: get_field(profs.get(t), key)
                       for key in ("traffic_policy", "port_traffic_policies", "subsets")}}
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
    except (ProxyConfigError, DumpError) as e:
        fail(str(e))
    except StoreError as e:
        fail(f"cannot read the store: {e}")

