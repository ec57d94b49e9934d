"""`meshlet check [-o table|json]`: Linkerd-style health checks of the local mesh.

The checks are data (`meshlet.controller.local.checks`); this module only
renders the results the runner hands to its observer. Exit status 1 when any
non-warning check failed.
"""
from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn

import click
from meshlet.controller.cli._local import absolute
from meshlet.controller.config import LocalConfig
from meshlet.controller.local.checks import CheckContext, local_categories
from meshlet.controller.local.healthcheck import (
    CheckResult,
    Observer,
    Summary,
    run_checks,
)

OK, WARN, FAIL = "√", "‼", "×"


class TableObserver:
    """Prints each result as it arrives, with a header per category."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.category: str | None = None

    def __call__(self, r: CheckResult) -> None:
        if r.category != self.category:
            if self.category is not None:
                self.write("")
            self.write(r.category)
            self.write("-" * len(r.category))
            self.category = r.category
        mark = OK if r.ok else WARN if r.warning else FAIL
        self.write(f"{mark} {r.description}")
        if not r.ok:
            for line in (r.error or "").splitlines():
                self.write(f"    {line}")
            self.write(f"    see {r.hint} for hints")

    def finish(self, summary: Summary) -> None:
        self.write("")
        self.write(f"Status check results are {OK if summary.success else FAIL}")


def render_json(summary: Summary) -> str:
    categories: list[dict[str, object]] = []
    for r in summary.results:
        if not categories or categories[-1]["categoryName"] != r.category:
            categories.append({"categoryName": r.category, "checks": []})
        checks = categories[-1]["checks"]
        assert isinstance(checks, list)
        checks.append({"description": r.description, "hint": r.hint, "error": r.error or "", "result": r.result})
    return json.dumps({"success": summary.success, "categories": categories}, indent=2)


@click.command()
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--mode", type=click.Choice(["local", "kube"]), default=None, envvar="MESHLET_MODE",
              help="local mesh (default) or a Kubernetes cluster (implied by --kubeconfig, --context, --pre, --proxy).")
@click.option("--kubeconfig", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Kubernetes mode: kubeconfig file (default $KUBECONFIG, ~/.kube/config, in-cluster).")
@click.option("--context", "kube_context", default=None, help="Kubernetes mode: kubeconfig context.")
@click.option("--control-plane-namespace", "-L", default="meshlet", show_default=True,
              help="Kubernetes mode: namespace of the control plane.")
@click.option("--pre", is_flag=True, help="Kubernetes mode: only check that the cluster is ready for meshlet install.")
@click.option("--proxy", is_flag=True, help="Kubernetes mode: also check the data-plane proxies.")
@click.option("-n", "--namespace", default=None, help="Kubernetes mode, --proxy: only this namespace.")
@click.pass_obj
def check(cfg: LocalConfig, output: str, mode: str | None, kubeconfig: Path | None, kube_context: str | None,
          control_plane_namespace: str, pre: bool, proxy: bool, namespace: str | None) -> None:
    """Check the health of the local mesh (runtime, control plane, identity, data plane) or of a cluster install."""
    if mode == "kube" or (mode is None and (kubeconfig or kube_context or pre or proxy)):
        from meshlet.controller.cli.check_kube import KubeCheckOptions, run_kube_checks

        opts = KubeCheckOptions(kubeconfig, kube_context, control_plane_namespace, namespace, pre, proxy)
        _report(output, lambda observer: run_kube_checks(opts, observer))
    if pre or proxy:
        raise click.UsageError("--pre and --proxy apply to Kubernetes mode, not --mode local")
    cfg = absolute(cfg)
    ctx = CheckContext(cfg)
    if output == "table":
        observer = TableObserver(click.echo)
        summary = asyncio.run(run_checks(local_categories(), ctx, observer))
        observer.finish(summary)
    else:
        summary = asyncio.run(run_checks(local_categories(), ctx, lambda r: None))
        click.echo(render_json(summary))
    sys.exit(0 if summary.success else 1)


def _report(output: str, run: Callable[[Observer], Awaitable[Summary]]) -> NoReturn:
    if output == "table":
        observer = TableObserver(click.echo)
        summary = asyncio.run(run(observer))
        observer.finish(summary)
    else:
        summary = asyncio.run(run(lambda r: None))
        click.echo(render_json(summary))
    sys.exit(0 if summary.success else 1)
