"""KubeStore in-cluster: the pod's service-account token and CA (as the kubelet mounts them) and
KUBERNETES_SERVICE_HOST/PORT, against the real API server; the service account's RBAC applies."""
from __future__ import annotations

from pathlib import Path

import pytest
from meshlet.controller.model import ObjectMeta, Service
from meshlet.controller.model.core import ServicePort, ServiceSpec
from meshlet.controller.store import StoreError
from meshlet.controller.store.kube import KubeStore, KubeStoreConfig
from meshlet.e2e.kubeapi import KubeAPIServer
from store_helpers import kube_store


async def test_in_cluster_uses_the_service_account(kube_api: KubeAPIServer, kube_ns: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async with kube_store(kube_api) as admin:
        t = admin.transport
        await t.request("POST", f"/api/v1/namespaces/{kube_ns}/serviceaccounts",
                        body={"metadata": {"name": "reader"}})
        await t.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{kube_ns}/roles", body={
            "metadata": {"name": "read-services"},
            "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}]})
        await t.request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{kube_ns}/rolebindings", body={
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-services"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": kube_ns}]})
        answer = await t.request("POST", f"/api/v1/namespaces/{kube_ns}/serviceaccounts/reader/token",
                                 body={"spec": {"expirationSeconds": 3600}})
        await admin.apply([Service(metadata=ObjectMeta(name="web", namespace=kube_ns),
                                   spec=ServiceSpec(ports=(ServicePort(80),)))])

    mounted = tmp_path / "serviceaccount"
    mounted.mkdir()
    (mounted / "token").write_text(answer["status"]["token"])
    (mounted / "ca.crt").write_bytes(kube_api.ca_pem)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(kube_api.port))
    store = await KubeStore.connect(KubeStoreConfig(service_account_dir=mounted))
    try:
        items, _ = await store.list("Service", kube_ns)
        assert [s.metadata.name for s in items] == ["web"]
        with pytest.raises(StoreError, match=f"system:serviceaccount:{kube_ns}:reader"):
            await store.list("Pod", kube_ns)  # not granted to this service account
    finally:
        await store.close()


async def test_outside_a_pod_in_cluster_mode_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(StoreError, match="not running in a pod\\? give --kubeconfig"):
        await KubeStore.connect(KubeStoreConfig())
