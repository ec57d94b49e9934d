"""Which store the resource verbs (apply, get, delete) talk to: the local mesh or a Kubernetes cluster.

Same convention as `meshlet check`: `--mode local|kube` (env MESHLET_MODE), Kubernetes mode implied by
`--kubeconfig` or `--context`; the kubeconfig is `--kubeconfig`, else $KUBECONFIG, else ~/.kube/config,
else the in-cluster service account. Local mode (the default) opens the SQLite store of the local mesh.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from meshlet.controller.config import LocalConfig
from meshlet.controller.store import Invalid, Store, StoreError, open_local_store

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Target:
    """Where a verb reads and writes resources."""

    local: LocalConfig
    kube: bool = False
    kubeconfig: Path | None = None
    """kube only: None = $KUBECONFIG, ~/.kube/config, in-cluster (in that order)."""
    context: str | None = None

    @classmethod
    def from_options(cls, cfg: LocalConfig, mode: str | None, kubeconfig: Path | None,
                     context: str | None) -> Target:
        kube = mode == "kube" or (mode is None and (kubeconfig is not None or context is not None))
        if not kube and (kubeconfig is not None or context is not None):
            raise click.UsageError("--kubeconfig and --context apply to Kubernetes mode, not --mode local")
        return cls(local=cfg, kube=kube, kubeconfig=kubeconfig, context=context)

    def resolved_kubeconfig(self) -> Path | None:
        if self.kubeconfig is not None:
            return self.kubeconfig
        env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        if env:
            return Path(env)
        home = Path.home() / ".kube" / "config"
        return home if home.exists() else None

    def require_local_mesh(self) -> str | None:
        """Why the store cannot be opened for reading (no local mesh), or None."""
        if not self.kube and not self.local.db_path.exists():
            return f"no local mesh at {self.local.state_dir}: run `meshlet up`"
        return None

    async def open(self, *, create: bool = False) -> Store:
        """The store; StoreError when the Kubernetes configuration cannot be loaded."""
        if not self.kube:
            return open_local_store(self.local, create=create)
        from meshlet.controller.store.kube import KubeStore, KubeStoreConfig

        return await KubeStore.connect(KubeStoreConfig(kubeconfig=self.resolved_kubeconfig(), context=self.context))


def describe(error: StoreError) -> str:
    """The CLI's text for `error`: a refusal's problems without the ones an earlier one already states
    (the API server's 422 message names every invalid field, and its causes repeat them)."""
    if not isinstance(error, Invalid):
        return str(error)
    kept: list[str] = []
    for problem in error.problems:
        if not any(problem in earlier for earlier in kept):
            kept.append(problem)
    return str(Invalid(kept)) if kept else str(error)


def target_options(fn: F) -> F:
    """click options --mode, --kubeconfig, --context (give them to Target.from_options)."""
    fn = click.option("--context", "kube_context", default=None, help="Kubernetes mode: kubeconfig context.")(fn)
    fn = click.option("--kubeconfig", type=click.Path(path_type=Path, dir_okay=False), default=None,
                      help="Kubernetes mode: kubeconfig file (default $KUBECONFIG, ~/.kube/config, in-cluster).")(fn)
    fn = click.option("--mode", type=click.Choice(["local", "kube"]), default=None, envvar="MESHLET_MODE",
                      help="local mesh (default) or a Kubernetes cluster (implied by --kubeconfig, --context).")(fn)
    return fn


__all__ = ["StoreError", "Target", "describe", "target_options"]
