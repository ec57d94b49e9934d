"""How the Kubernetes store reaches the API server: a kubeconfig file or the pod's service account."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig

from meshlet.controller.store.errors import StoreError


@dataclass(frozen=True)
class KubeStoreConfig:
    kubeconfig: Path | None = None
    """None: in-cluster (the service-account token and CA mounted into the pod)."""
    context: str | None = None
    """kubeconfig context; None = its current-context."""
    field_manager: str = "meshlet"
    """Server-side apply field manager of meshlet's writes."""
    request_timeout: float = 30.0
    """Seconds for one ordinary request (get, list, apply, ...)."""
    watch_timeout: int = 300
    """timeoutSeconds of one watch request: the server ends it after this long and the store resumes."""
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    """Delay between retries of a failing list or watch (doubling from initial to max)."""
    missing_kind_retry: float = 30.0
    """How often a watch looks again for a kind the server does not serve (CRDs not installed yet)."""
    queue_capacity: int = 1000
    """Events buffered between the per-kind watchers and the consumer of `watch()`."""

    def describe(self) -> str:
        if self.kubeconfig is None:
            return "in-cluster service account"
        return f"kubeconfig {self.kubeconfig}" + (f" (context {self.context})" if self.context else "")


async def new_api_client(cfg: KubeStoreConfig) -> kclient.ApiClient:
    """An ApiClient for `cfg`; StoreError naming the source when it cannot be loaded."""
    conf = kclient.Configuration()
    try:
        if cfg.kubeconfig is not None:
            if not cfg.kubeconfig.exists():
                raise StoreError(f"kubeconfig {cfg.kubeconfig} does not exist")
            await kconfig.load_kube_config(config_file=str(cfg.kubeconfig), context=cfg.context,
                                           client_configuration=conf, persist_config=False)
        else:
            kconfig.load_incluster_config(client_configuration=conf)
    except kconfig.ConfigException as e:
        raise StoreError(f"cannot use the {cfg.describe()}: {e}") from None
    return kclient.ApiClient(configuration=conf)
