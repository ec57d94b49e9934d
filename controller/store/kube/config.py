"""How the Kubernetes store reaches the API server: a kubeconfig file or the pod's service account."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig
from meshlet.controller.store.errors import StoreError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class KubeStoreConfig:
    kubeconfig: Path | None = None
    """None: in-cluster (the service-account token and CA mounted into the pod)."""
    context: str | None = None
    """kubeconfig context; None = its current-context."""
    service_account_dir: Path = SERVICE_ACCOUNT_DIR
    """In-cluster: where the pod's token and ca.crt are mounted (the API server's address comes from
    KUBERNETES_SERVICE_HOST/PORT); the token is re-read as the kubelet rotates it."""
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
            kconfig.load_incluster_config(client_configuration=conf,
                                          token_filename=str(cfg.service_account_dir / "token"),
                                          cert_filename=str(cfg.service_account_dir / "ca.crt"))
    except kconfig.ConfigException as e:
        hint = " (not running in a pod? give --kubeconfig)" if cfg.kubeconfig is None else ""
        raise StoreError(f"cannot use the {cfg.describe()}{hint}: {e}") from None
    return kclient.ApiClient(configuration=conf)
