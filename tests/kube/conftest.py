"""Fixtures for tests against a real kube-apiserver (etcd + kube-apiserver on loopback).

`kube_api` starts one API server per pytest session (meshlet.e2e.kubeapi); `kube_ns`
gives each test a fresh namespace with a `default` ServiceAccount; `kube_client` is an
admin `kubernetes_asyncio` ApiClient. The binaries come from `make kube-tools`; without
them these tests fail and say so (they are part of the suite, not optional).
"""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig

from meshlet.e2e.kubeapi import KubeAPIServer, KubeTools, KubeToolsMissing


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/kube/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.kube)


@pytest.fixture(scope="session")
def kube_tools() -> KubeTools:
    try:
        return KubeTools.locate()
    except KubeToolsMissing as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def kube_api(kube_tools: KubeTools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    with KubeAPIServer(kube_tools, tmp_path_factory.mktemp("kube-apiserver")) as api:
        yield api


@pytest.fixture
async def kube_client(kube_api: KubeAPIServer) -> AsyncIterator[kclient.ApiClient]:
    api = await kconfig.new_client_from_config(config_file=str(kube_api.kubeconfig))
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def kube_ns(kube_client: kclient.ApiClient) -> str:
    """A fresh namespace (never deleted: no controller-manager runs to finish a deletion)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = kclient.CoreV1Api(kube_client)
    await core.create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=name)))
    await core.create_namespaced_service_account(
        name, kclient.V1ServiceAccount(metadata=kclient.V1ObjectMeta(name="default")))
    return name
