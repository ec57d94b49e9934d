"""Choosing the store of a control-plane process: the local SQLite file or a Kubernetes API server.

Every control-plane process takes the same flags (`store_options`):

    --store local|kube      local (default): the SQLite store of the local mesh
    --kubeconfig PATH       with --store kube: the cluster of this kubeconfig;
                            without it: in-cluster (the pod's service account)
    --kube-context NAME     a context of the kubeconfig other than its current one

    settings = StoreSettings.from_options(store, kubeconfig, kube_context)   # click.UsageError if inconsistent
    store = await open_store(settings, local=lambda: SqliteStore(path))
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from meshlet.controller.store.base import Store

F = TypeVar("F", bound=Callable[..., Any])
Backend = Literal["local", "kube"]


@dataclass(frozen=True)
class StoreSettings:
    backend: Backend = "local"
    kubeconfig: Path | None = None
    """kube only; None = in-cluster."""
    context: str | None = None

    @classmethod
    def from_options(cls, store: str, kubeconfig: Path | None, context: str | None) -> StoreSettings:
        if store not in ("local", "kube"):
            raise click.UsageError(f"--store must be local or kube, got {store!r}")
        if store == "local" and (kubeconfig is not None or context is not None):
            raise click.UsageError("--kubeconfig and --kube-context need --store kube")
        return cls(backend=store, kubeconfig=kubeconfig, context=context)  # type: ignore[arg-type]

    def describe(self) -> str:
        if self.backend == "local":
            return "local"
        return f"kube ({self.kubeconfig or 'in-cluster'}" + (f", context {self.context})" if self.context else ")")


async def open_store(settings: StoreSettings, local: Callable[[], Store], *, log: Any = None) -> Store:
    """The store `settings` name; `local` builds the local one (each process opens it its own way).

    Raises StoreError when the Kubernetes configuration cannot be loaded.
    """
    if settings.backend == "kube":
        from meshlet.controller.store.kube import KubeStore, KubeStoreConfig

        return await KubeStore.connect(KubeStoreConfig(kubeconfig=settings.kubeconfig, context=settings.context),
                                       log=log)
    return local()


def store_options(fn: F) -> F:
    """click options --store, --kubeconfig, --kube-context (pass them to StoreSettings.from_options)."""
    fn = click.option("--kube-context", "kube_context", default=None,
                      help="kubeconfig context [default: its current-context].")(fn)
    fn = click.option("--kubeconfig", type=click.Path(path_type=Path, dir_okay=False), default=None,
                      help="With --store kube: the cluster's kubeconfig [default: in-cluster service account].")(fn)
    fn = click.option("--store", "store", type=click.Choice(["local", "kube"]), default="local", show_default=True,
                      envvar="MESHLET_STORE",
                      help="Where resources live: the local mesh's SQLite store or a Kubernetes API server.")(fn)
    return fn
