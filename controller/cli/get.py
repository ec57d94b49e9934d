"""`meshlet get KIND[,KIND...] [NAME] [-n NS | -A] [-o json|yaml|wide|name]`: kubectl-like output.

Tables are data: `COLUMNS[kind]` lists (header, cell function, wide-only);
kinds without an entry show NAME and AGE.
"""
from __future__ import annotations

import asyncio
import datetime
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml
from meshlet.controller.cli._store import Target, describe, target_options
from meshlet.controller.config import LocalConfig
from meshlet.controller.model import (
    DEFAULT_REGISTRY,
    Deployment,
    Pod,
    Resource,
    Service,
    UnknownKind,
    to_obj,
)
from meshlet.controller.model.registry import KindInfo
from meshlet.controller.store import StoreError

PROXY_ANNOTATION = "meshlet.io/proxy"
ALL = ("pods", "services", "deployments")
"""What `get all` shows (as kubectl: the workload kinds, not config)."""


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Any, datetime.datetime], str]
    wide_only: bool = False


def age(resource: Resource, now: datetime.datetime) -> str:
    ts = resource.metadata.creation_timestamp
    if not ts:
        return "<unknown>"
    try:
        created = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return "<unknown>"
    return human_duration((now - created).total_seconds())


def human_duration(seconds: float) -> str:
    """kubectl's short durations: 45s, 3m20s, 12m, 5h, 3d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 3 * 3600:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _pod_ready(pod: Pod, _: datetime.datetime) -> str:
    total = len(pod.spec.containers)
    statuses = pod.status.container_statuses if pod.status else ()
    ready = sum(1 for c in statuses if c.ready)
    return f"{ready}/{total}"


def _pod_status(pod: Pod, _: datetime.datetime) -> str:
    if pod.status is None:
        return "Pending"
    return pod.status.reason or pod.status.phase


def _pod_restarts(pod: Pod, _: datetime.datetime) -> str:
    return str(sum(c.restart_count for c in pod.status.container_statuses) if pod.status else 0)


def _svc_ports(svc: Service, _: datetime.datetime) -> str:
    return ",".join(f"{p.port}/{p.protocol}" for p in svc.spec.ports) or "<none>"


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "<none>"


def _deploy_ready(d: Deployment, _: datetime.datetime) -> str:
    ready = d.status.ready_replicas if d.status else 0
    return f"{ready}/{d.spec.replicas}"


NAME = Column("NAME", lambda r, now: r.metadata.name)
AGE = Column("AGE", age)

COLUMNS: dict[str, list[Column]] = {
    "Pod": [
        NAME, Column("READY", _pod_ready), Column("STATUS", _pod_status), Column("RESTARTS", _pod_restarts),
        Column("IP", lambda p, now: (p.status.pod_ip if p.status else None) or "<none>"), AGE,
        Column("SERVICEACCOUNT", lambda p, now: p.spec.service_account_name or "default", wide_only=True),
        Column("MESHED", lambda p, now: "yes" if p.metadata.annotations.get(PROXY_ANNOTATION) else "no",
               wide_only=True),
    ],
    "Service": [
        NAME, Column("TYPE", lambda s, now: s.spec.type),
        Column("CLUSTER-IP", lambda s, now: s.spec.cluster_ip or "<none>"),
        Column("PORT(S)", _svc_ports), AGE,
        Column("SELECTOR", lambda s, now: _selector(s.spec.selector), wide_only=True),
    ],
    "Deployment": [
        NAME, Column("READY", _deploy_ready),
        Column("UP-TO-DATE", lambda d, now: str(d.status.updated_replicas if d.status else 0)),
        Column("AVAILABLE", lambda d, now: str(d.status.available_replicas if d.status else 0)), AGE,
        Column("CONTAINERS", lambda d, now: ",".join(c.name for c in d.spec.template.spec.containers),
               wide_only=True),
        Column("IMAGES", lambda d, now: ",".join(c.image or "<none>" for c in d.spec.template.spec.containers),
               wide_only=True),
        Column("SELECTOR", lambda d, now: _selector(d.spec.selector.match_labels), wide_only=True),
    ],
    "Namespace": [NAME, Column("STATUS", lambda n, now: "Active"), AGE],
    "WorkloadToken": [
        NAME, Column("SERVICEACCOUNT", lambda t, now: t.spec.service_account),
        Column("POD", lambda t, now: t.spec.pod), AGE,
    ],
}


def _list(values: Any) -> str:
    """kubectl's rendering of a string-list column: ["a","b"]."""
    return json.dumps(list(values), separators=(",", ":")) if values else ""


# Istio's CRDs declare these printer columns (kubectl get vs: NAME GATEWAYS HOSTS AGE ...)
COLUMNS.update({
    "VirtualService": [NAME, Column("GATEWAYS", lambda r, now: _list(r.spec.gateways)),
                       Column("HOSTS", lambda r, now: _list(r.spec.hosts)), AGE],
    "DestinationRule": [NAME, Column("HOST", lambda r, now: r.spec.host), AGE],
    "ServiceEntry": [NAME, Column("HOSTS", lambda r, now: _list(r.spec.hosts)),
                     Column("LOCATION", lambda r, now: r.spec.location),
                     Column("RESOLUTION", lambda r, now: r.spec.resolution), AGE],
    "PeerAuthentication": [NAME, Column("MODE", lambda r, now: r.spec.mode), AGE],
    "AuthorizationPolicy": [NAME, Column("ACTION", lambda r, now: r.spec.action), AGE],
    "HTTPRoute": [NAME, Column("HOSTNAMES", lambda r, now: _list(r.spec.hostnames)), AGE],
    "MeshConfig": [NAME, Column("OUTBOUND", lambda r, now: r.spec.outbound_traffic_policy.mode), AGE],
})


def table_rows(info: KindInfo, items: list[Resource], *, wide: bool, all_namespaces: bool,
               now: datetime.datetime, header: bool = True, kind_prefix: bool = False) -> list[list[str]]:
    """Cells of a kubectl-style table; kind_prefix names rows `service/x` (when several kinds are shown)."""
    columns = [c for c in COLUMNS.get(info.kind, [NAME, AGE]) if wide or not c.wide_only]
    rows: list[list[str]] = []
    if header:
        rows.append((["NAMESPACE"] if all_namespaces and info.namespaced else []) + [c.header for c in columns])
    for item in items:
        prefix = [item.metadata.namespace or ""] if all_namespaces and info.namespaced else []
        cells = [c.cell(item, now) for c in columns]
        if kind_prefix and columns and columns[0] is NAME:
            cells[0] = f"{info.display}/{cells[0]}"
        rows.append(prefix + cells)
    return rows


def column_widths(rows: list[list[str]]) -> list[int]:
    return [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []


def format_rows(rows: list[list[str]], widths: list[int]) -> str:
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def render_table(info: KindInfo, items: list[Resource], *, wide: bool, all_namespaces: bool,
                 now: datetime.datetime, header: bool = True, kind_prefix: bool = False) -> str:
    rows = table_rows(info, items, wide=wide, all_namespaces=all_namespaces, now=now, header=header,
                      kind_prefix=kind_prefix)
    return format_rows(rows, column_widths(rows))


def render_objects(items: list[Resource], fmt: str, single: bool) -> str:
    data: Any = to_obj(items[0]) if single else {
        "apiVersion": "v1", "kind": "List", "items": [to_obj(i) for i in items]}
    if fmt == "json":
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")


@dataclass(frozen=True)
class Query:
    infos: list[KindInfo]
    name: str | None
    namespace: str | None
    """None: all namespaces."""

    def matches(self, resource: Resource) -> bool:
        if self.name is not None and resource.metadata.name != self.name:
            return False
        return self.namespace is None or not resource.namespaced or resource.metadata.namespace == self.namespace


async def _fetch(target: Target, query: Query) -> list[tuple[KindInfo, list[Resource], int]]:
    store = await target.open()
    try:
        out = []
        for info in query.infos:
            items, rv = await store.list(info.kind, query.namespace)
            out.append((info, [i for i in items if query.matches(i)], rv))
        return out
    finally:
        await store.close()


async def _watch(target: Target, query: Query, listed: dict[str, int],
                 show: Callable[[KindInfo, Resource], None]) -> None:
    """Show every change after the listing until interrupted."""
    store = await target.open()
    try:
        async for event in store.watch({i.kind for i in query.infos}, since=min(listed.values())):
            resource = event.resource
            if event.resource_version > listed[resource.kind] and query.matches(resource):
                show(DEFAULT_REGISTRY.for_kind(resource.kind), resource)
    finally:
        await store.close()


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default=None, help="Namespace (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-o", "--output", type=click.Choice(["json", "yaml", "wide", "name"]), default=None)
@click.option("-w", "--watch", is_flag=True, help="After listing, keep showing changes (Ctrl-C ends).")
@target_options
@click.pass_obj
def get(cfg: LocalConfig, kind: str, name: str | None, namespace: str | None, all_namespaces: bool,
        output: str | None, watch: bool, mode: str | None, kubeconfig: Path | None, kube_context: str | None) -> None:
    """Show resources: `get pods`, `get svc reviews -n bookinfo -o yaml`, `get deploy,svc -A`, `get po -w`.

    Reads the local mesh, or a Kubernetes cluster with --mode kube (implied by --kubeconfig/--context).
    """
    target = Target.from_options(cfg, mode, kubeconfig, kube_context)
    try:
        infos = [DEFAULT_REGISTRY.resolve(a) for k in kind.split(",") if k for a in (ALL if k == "all" else [k])]
    except UnknownKind as e:
        _fail(str(e))
        return
    if not infos:
        _fail("no resource type given")
    if all_namespaces and name is not None:
        _fail("a resource cannot be retrieved by name across all namespaces")
    if (why := target.require_local_mesh()) is not None:
        _fail(why)
    query = Query(infos, name, None if all_namespaces else (namespace or "default"))
    try:
        results = asyncio.run(_fetch(target, query))
    except StoreError as e:
        _fail(describe(e))
        return
    found = [(info, items) for info, items, _ in results if items]
    if name is not None and not found and not watch:
        click.echo(f'Error from server (NotFound): {infos[0].plural} "{name}" not found', err=True)
        sys.exit(1)
    if not found:
        where = "" if query.namespace is None or all(not i.namespaced for i in infos) else f" in {query.namespace} namespace"
        click.echo(f"No resources found{where}.", err=True)
    show = _show_listing(found, output, single=name is not None, all_namespaces=all_namespaces)
    if not watch:
        return
    try:
        asyncio.run(_watch(target, query, {info.kind: rv for info, _, rv in results}, show))
    except StoreError as e:
        _fail(describe(e))
    except KeyboardInterrupt:
        pass


def _show_listing(found: list[tuple[KindInfo, list[Resource]]], output: str | None, *, single: bool,
                  all_namespaces: bool) -> Callable[[KindInfo, Resource], None]:
    """Print the listing; return how to print one more object (for --watch) in the same format."""
    if output in ("json", "yaml"):
        items = [item for _, items in found for item in items]
        if items:
            click.echo(render_objects(items, output, single=single and len(items) == 1))
        return lambda info, item: click.echo(render_objects([item], output, single=True)
                                             if output == "json" else "---\n" + render_objects([item], "yaml", True))
    if output == "name":
        for info, items in found:
            for item in items:
                click.echo(f"{info.display}/{item.metadata.name}")
        return lambda info, item: click.echo(f"{info.display}/{item.metadata.name}")
    wide, prefix = output == "wide", len(found) > 1
    now = datetime.datetime.now(datetime.UTC)
    widths: dict[str, list[int]] = {}
    blocks = []
    for info, items in found:
        rows = table_rows(info, items, wide=wide, all_namespaces=all_namespaces, now=now, kind_prefix=prefix)
        widths[info.kind] = column_widths(rows)
        blocks.append(format_rows(rows, widths[info.kind]))
    if blocks:
        click.echo("\n\n".join(blocks))

    def show(info: KindInfo, item: Resource) -> None:
        header = info.kind not in widths
        rows = table_rows(info, [item], wide=wide, all_namespaces=all_namespaces, header=header,
                          now=datetime.datetime.now(datetime.UTC), kind_prefix=prefix)
        known = widths.get(info.kind, [])
        widths[info.kind] = [max(a, b) for a, b in zip(column_widths(rows), known + [0] * len(rows[0]))]
        click.echo(format_rows(rows, widths[info.kind]))
    return show
