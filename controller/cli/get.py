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
from typing import Any

import click
import yaml
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
from meshlet.controller.store import StoreError, open_local_store

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


def render_table(info: KindInfo, items: list[Resource], *, wide: bool, all_namespaces: bool,
                 now: datetime.datetime, header: bool = True, kind_prefix: bool = False) -> str:
    """A kubectl-style table; kind_prefix names rows `service/x` (when several kinds are shown)."""
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
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def render_objects(items: list[Resource], fmt: str, single: bool) -> str:
    data: Any = to_obj(items[0]) if single else {
        "apiVersion": "v1", "kind": "List", "items": [to_obj(i) for i in items]}
    if fmt == "json":
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")


async def _fetch(cfg: LocalConfig, infos: list[KindInfo], name: str | None,
                 namespace: str | None) -> list[tuple[KindInfo, list[Resource]]]:
    store = open_local_store(cfg, create=False)
    try:
        out = []
        for info in infos:
            if name is not None:
                obj = await store.get(info.kind, namespace, name)
                out.append((info, [obj] if obj is not None else []))
            else:
                items, _ = await store.list(info.kind, namespace)
                out.append((info, items))
        return out
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
@click.pass_obj
def get(cfg: LocalConfig, kind: str, name: str | None, namespace: str | None, all_namespaces: bool,
        output: str | None) -> None:
    """Show resources: `get pods`, `get svc reviews -n bookinfo -o yaml`, `get deploy,svc -A`."""
    try:
        infos = [info for k in kind.split(",") if k
                 for info in ([DEFAULT_REGISTRY.resolve(a) for a in ALL] if k == "all" else [DEFAULT_REGISTRY.resolve(k)])]
    except UnknownKind as e:
        _fail(str(e))
        return
    if not infos:
        _fail("no resource type given")
    if all_namespaces and name is not None:
        _fail("a resource cannot be retrieved by name across all namespaces")
    if not cfg.db_path.exists():
        _fail(f"no local mesh at {cfg.state_dir}: run `meshlet up`")
    ns = None if all_namespaces else (namespace or "default")
    try:
        results = asyncio.run(_fetch(cfg, infos, name, ns))
    except StoreError as e:
        _fail(str(e))
        return
    found = [(info, items) for info, items in results if items]
    if name is not None and not found:
        click.echo(f'Error from server (NotFound): {infos[0].plural} "{name}" not found', err=True)
        sys.exit(1)
    if not found:
        where = "" if all_namespaces or all(not i.namespaced for i in infos) else f" in {ns} namespace"
        click.echo(f"No resources found{where}.", err=True)
        return
    if output in ("json", "yaml"):
        items = [item for _, items in found for item in items]
        click.echo(render_objects(items, output, single=name is not None and len(items) == 1))
        return
    if output == "name":
        for info, items in found:
            for item in items:
                click.echo(f"{info.display}/{item.metadata.name}")
        return
    now = datetime.datetime.now(datetime.UTC)
    blocks = []
    for info, items in found:
        blocks.append(render_table(info, items, wide=output == "wide", all_namespaces=all_namespaces, now=now,
                                   kind_prefix=len(found) > 1))
    click.echo("\n\n".join(blocks))
