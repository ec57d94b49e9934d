"""`meshlet apply -f PATH...` and `meshlet delete (-f PATH... | KIND NAME [-n NS])`.

Errors (bad manifests, refused requests) print `error: ...` and exit 1 with
nothing changed; the store's all-or-nothing apply guarantees the latter.
Kubernetes mode (`--mode kube`, implied by `--kubeconfig`/`--context`; see
`_store.py`) writes through the API server, which has no multi-object
transaction: every object is validated first, and a write refused after others
succeeded names what was applied and what was not attempted.
"""
from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from meshlet.controller.cli._store import Target, describe, target_options
from meshlet.controller.config import LocalConfig
from meshlet.controller.model import (
    DEFAULT_REGISTRY,
    ManifestError,
    Resource,
    UnknownKind,
    load_paths,
)
from meshlet.controller.model.registry import KindInfo
from meshlet.controller.store import StoreError


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _label(resource: Resource) -> str:
    return f"{DEFAULT_REGISTRY.for_kind(resource.kind).display}/{resource.metadata.name}"


def _load(files: Sequence[str], namespace: str | None = None) -> list[Resource]:
    warnings: list[str] = []
    try:
        resources = load_paths(list(files), warnings=warnings, namespace=namespace)
    except ManifestError as e:
        _fail(str(e))
        raise AssertionError("unreachable")
    for warning in warnings:
        click.echo(f"Warning: {warning}", err=True)
    return resources


class _Refused(Exception):
    """References to missing objects (see meshlet.controller.analyze.admission)."""


async def _apply(target: Target, resources: list[Resource], validate: str = "strict") -> list[str]:
    store = await target.open(create=True)
    try:
        if validate != "ignore":
            from meshlet.controller.analyze.admission import admit

            verdict = await admit(store, resources)
            for warning in verdict.warnings + (verdict.errors if validate == "warn" else []):
                click.echo(f"Warning: {warning}", err=True)
            if verdict.errors and validate == "strict":
                raise _Refused(verdict.errors[0] if len(verdict.errors) == 1 else
                               f"{len(verdict.errors)} problems:\n  " + "\n  ".join(verdict.errors))
        results = await store.apply(resources)
    finally:
        await store.close()
    return [f"{_label(r.resource)} {r.action.value}" for r in results]


@click.command()
@click.option("-f", "--filename", "files", multiple=True, required=True, metavar="PATH",
              help="Manifest file, directory of *.yaml/*.yml, or - for stdin (repeatable).")
@click.option("-n", "--namespace", default=None, help="Namespace for objects that name none.")
@click.option("--validate", type=click.Choice(["strict", "warn", "ignore"]), default="strict", show_default=True,
              help="References to missing hosts/gateways: refuse (strict), only warn, or skip the check.")
@target_options
@click.pass_obj
def apply(cfg: LocalConfig, files: tuple[str, ...], namespace: str | None, validate: str, mode: str | None,
          kubeconfig: Path | None, kube_context: str | None) -> None:
    """Create or update resources from manifests (all-or-nothing in the local mesh).

    Writes to the local mesh, or through a Kubernetes API server with --mode kube (implied by --kubeconfig);
    there all objects are validated first, and a later refusal names what was already applied.
    """
    target = Target.from_options(cfg, mode, kubeconfig, kube_context)
    resources = _load(files, namespace)
    if not resources:
        _fail(f"no objects passed to apply (in {', '.join(files)})")
    try:
        lines = asyncio.run(_apply(target, resources, validate))
    except _Refused as e:
        _fail(str(e))
        return
    except StoreError as e:
        _fail(describe(e))
        return
    for line in lines:
        click.echo(line)


async def _delete(target: Target,
                  targets: list[tuple[str, str | None, str]]) -> list[tuple[KindInfo, str, bool]]:
    store = await target.open()
    out = []
    try:
        for kind, ns, name in targets:
            info = DEFAULT_REGISTRY.for_kind(kind)
            out.append((info, name, await store.delete(info.kind, ns, name)))
    finally:
        await store.close()
    return out


@click.command()
@click.option("-f", "--filename", "files", multiple=True, metavar="PATH",
              help="Delete the objects named in these manifests (repeatable).")
@click.option("-n", "--namespace", default=None, help="Namespace of KIND NAME (default: default).")
@click.option("--ignore-not-found", is_flag=True, help="Exit 0 even if an object does not exist.")
@click.argument("args", nargs=-1)
@target_options
@click.pass_obj
def delete(cfg: LocalConfig, files: tuple[str, ...], namespace: str | None, ignore_not_found: bool,
           args: tuple[str, ...], mode: str | None, kubeconfig: Path | None, kube_context: str | None) -> None:
    """Delete resources: `delete -f PATH` or `delete KIND NAME... [-n NS]` (--mode kube / --kubeconfig: in a cluster)."""
    target = Target.from_options(cfg, mode, kubeconfig, kube_context)
    targets: list[tuple[str, str | None, str]] = []
    if files and args:
        _fail("give either -f PATH or KIND NAME, not both")
    if files:
        loaded = _load(files, namespace)
        # contents before their namespaces, so deleting a namespace does not make them "not found"
        loaded.sort(key=lambda r: r.kind == "Namespace")
        targets = [(r.kind, r.metadata.namespace, r.metadata.name) for r in loaded]
    elif len(args) >= 2:
        try:
            info = DEFAULT_REGISTRY.resolve(args[0])
        except UnknownKind as e:
            _fail(str(e))
            return
        targets = [(info.kind, namespace, name) for name in args[1:]]
    else:
        _fail("usage: meshlet delete -f PATH | meshlet delete KIND NAME [-n NS]")
    if (why := target.require_local_mesh()) is not None:
        _fail(why)
    try:
        results = asyncio.run(_delete(target, targets))
    except StoreError as e:
        _fail(describe(e))
        return
    missing = False
    for info, name, existed in results:
        if existed:
            click.echo(f"{info.display}/{name} deleted")
        elif not ignore_not_found:
            missing = True
            click.echo(f'Error from server (NotFound): {info.plural} "{name}" not found', err=True)
    if missing:
        sys.exit(1)
