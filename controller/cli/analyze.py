"""`meshlet analyze [-f FILES] [-A | -n NS] [-o log|json|yaml]`, like `istioctl analyze`.

Analyzes the store's resources (when a local mesh exists) together with the
given manifests, which override stored objects of the same kind/namespace/name.
Exit code 79 (istioctl's) when an Error-level message is found, 0 otherwise.
"""
from __future__ import annotations

import asyncio
import json
import sys

import click
import yaml
from meshlet.controller.config import LocalConfig
from meshlet.controller.model import DEFAULT_REGISTRY, Resource
from meshlet.controller.store import StoreError, open_local_store

ERROR_EXIT = 79


async def _stored(cfg: LocalConfig) -> list[Resource]:
    store = open_local_store(cfg, create=False)
    try:
        out: list[Resource] = []
        for info in DEFAULT_REGISTRY:
            if not info.internal:
                items, _ = await store.list(info.kind)
                out.extend(items)
        return out
    finally:
        await store.close()


@click.command()
@click.option("-f", "--filename", "files", multiple=True, metavar="PATH",
              help="Manifest file or directory to analyze with the store's contents (repeatable).")
@click.option("-n", "--namespace", default=None, help="Namespace to analyze (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Analyze every namespace.")
@click.option("--use-store/--no-store", default=True, show_default=True,
              help="Include the local mesh's stored resources (when a mesh exists).")
@click.option("-o", "--output", type=click.Choice(["log", "json", "yaml"]), default="log", show_default=True)
@click.pass_obj
def analyze(cfg: LocalConfig, files: tuple[str, ...], namespace: str | None, all_namespaces: bool,
            use_store: bool, output: str) -> None:
    """Report configuration problems (unknown hosts and subsets, unreachable rules, conflicts...)."""
    from meshlet.controller.analyze.messages import sort_key
    from meshlet.controller.analyze.run import analyze as run_analysis
    from meshlet.controller.analyze.run import load_for_analysis
    from meshlet.controller.analyze.snapshot import Snapshot

    if all_namespaces and namespace:
        click.echo("error: give either -n NAMESPACE or -A, not both", err=True)
        sys.exit(1)
    ns = None if all_namespaces else (namespace or "default")
    stored: list[Resource] = []
    if use_store and cfg.db_path.exists():
        try:
            stored = asyncio.run(_stored(cfg))
        except StoreError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
    loaded, messages = load_for_analysis(list(files), namespace) if files else ([], [])
    snap = Snapshot.of(stored, loaded)
    found = sorted(messages, key=sort_key) + run_analysis(snap, None if ns is None else {ns})
    where = "all namespaces" if ns is None else f"namespace: {ns}"
    if output == "log":
        for m in found:
            click.echo(m.line())
        if not found:
            click.echo(f"\u2714 No validation issues found when analyzing {where}.")
    else:
        data = [m.to_json() for m in found]
        click.echo(json.dumps(data, indent=2) if output == "json" else yaml.safe_dump(data, sort_keys=False).rstrip())
    if any(m.level.value == "Error" for m in found):
        click.echo(f"Error: Analyzers found issues when analyzing {where}.\nSee "
                   "https://istio.io/latest/docs/reference/config/analysis for more information about causes "
                   "and resolutions.", err=True)
        sys.exit(ERROR_EXIT)
