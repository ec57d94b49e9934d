"""The Kubernetes store backend: the Store protocol over a kube-apiserver (kubernetes_asyncio).

    store = await KubeStore.connect(KubeStoreConfig(kubeconfig=Path("~/.kube/config")))  # or in-cluster
    items, rv = await store.list("Service", "bookinfo")
    async for ev in store.watch({"Service", "EndpointSlice"}):   # list as ADDED, then changes
        ...

Modules: config (KubeStoreConfig, how to reach the server), transport (raw JSON
requests and watch streams), apierrors (API errors -> StoreErrors), resources
(kind -> REST paths), translate and podstatus (API objects <-> model, pure),
reflector (one kind's list/watch loop), store (KubeStore). Processes choose it
with `--store kube [--kubeconfig P]` (meshlet.controller.store.open).
"""
from meshlet.controller.store.kube.config import KubeStoreConfig, new_api_client
from meshlet.controller.store.kube.reflector import KindNotServed, Reflector, diff
from meshlet.controller.store.kube.resources import KubeResource
from meshlet.controller.store.kube.store import KubeStore
from meshlet.controller.store.kube.translate import Untranslatable, from_kube, status_to_kube, to_kube

__all__ = [
    "KindNotServed",
    "KubeResource",
    "KubeStore",
    "KubeStoreConfig",
    "Reflector",
    "Untranslatable",
    "diff",
    "from_kube",
    "new_api_client",
    "status_to_kube",
    "to_kube",
]
