"""The test API server itself: real admission, RBAC, TokenRequest/TokenReview."""
from __future__ import annotations

import pytest
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.client.exceptions import ApiException

from meshlet.e2e.kubeapi import KubeAPIServer


async def test_api_server_serves_version_and_namespaces(kube_client: kclient.ApiClient, kube_ns: str) -> None:
    version = await kclient.VersionApi(kube_client).get_code()
    assert version.major == "1" and int(version.minor.rstrip("+")) >= 30
    ns = await kclient.CoreV1Api(kube_client).read_namespace(kube_ns)
    assert ns.metadata.name == kube_ns


async def test_viewer_has_no_grants(kube_api: KubeAPIServer, kube_ns: str) -> None:
    api = await kconfig.new_client_from_config(config_file=str(kube_api.kubeconfig_for("viewer")))
    try:
        with pytest.raises(ApiException) as e:
            await kclient.CoreV1Api(api).list_namespaced_pod(kube_ns)
        assert e.value.status == 403
    finally:
        await api.close()


async def test_token_request_and_review(kube_client: kclient.ApiClient, kube_ns: str) -> None:
    core = kclient.CoreV1Api(kube_client)
    req = kclient.AuthenticationV1TokenRequest(
        spec=kclient.V1TokenRequestSpec(audiences=["identity.meshlet.io"], expiration_seconds=600))
    tok = await core.create_namespaced_service_account_token("default", kube_ns, req)
    review = await kclient.AuthenticationV1Api(kube_client).create_token_review(kclient.V1TokenReview(
        spec=kclient.V1TokenReviewSpec(token=tok.status.token, audiences=["identity.meshlet.io"])))
    assert review.status.authenticated
    assert review.status.user.username == f"system:serviceaccount:{kube_ns}:default"
