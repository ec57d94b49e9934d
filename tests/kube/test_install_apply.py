"""`meshlet install --crds | apply` and `meshlet install | apply` against the real API server
(server-side apply through kubernetes_asyncio, as `kubectl apply --server-side` would)."""
from __future__ import annotations

import asyncio
import base64
import time

import pytest
from install_helpers import (
    ApplyFailed,
    apply,
    delete_cluster_objects,
    docs_of,
    fresh_name,
    meshlet,
)
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.client.exceptions import ApiException
from meshlet.identity.certcheck import Status, check_ca_pem

pytestmark = pytest.mark.kube


async def _established(ext: kclient.ApiextensionsV1Api, names: list[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        for name in sorted(pending):
            crd = await ext.read_custom_resource_definition(name)
            conds = {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}
            if conds.get("Established") == "True":
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"not Established within {timeout:.0f}s: {sorted(pending)}")
        await asyncio.sleep(0.2)


async def test_install_crds_then_control_plane_apply(kube_client: kclient.ApiClient) -> None:
    crds = meshlet("install", "--crds")
    assert crds.returncode == 0, crds.stderr
    crd_docs = docs_of(crds.stdout)
    await apply(kube_client, crd_docs)
    await _established(kclient.ApiextensionsV1Api(kube_client), [d["metadata"]["name"] for d in crd_docs])

    ns = fresh_name("mi")
    out = meshlet("install", "-n", ns)
    assert out.returncode == 0, out.stderr
    try:
        await apply(kube_client, docs_of(out.stdout))
        core = kclient.CoreV1Api(kube_client)
        namespace = await core.read_namespace(ns)
        assert namespace.metadata.labels["meshlet.io/is-control-plane"] == "true"
        secret = await core.read_namespaced_secret("meshlet-identity-issuer", ns)
        assert secret.type == "kubernetes.io/tls"
        pems = {k: base64.b64decode(v) for k, v in secret.data.items()}
        assert all(c.status is Status.OK for c in check_ca_pem(pems["ca.crt"], pems["tls.crt"]))
        roots = await core.read_namespaced_config_map("meshlet-identity-trust-roots", ns)
        assert roots.data["ca-bundle.crt"].encode() == pems["ca.crt"]
        for c in ("destination", "identity", "injector"):
            await core.read_namespaced_service(f"meshlet-{c}", ns)
            await core.read_namespaced_service_account(f"meshlet-{c}", ns)
            dep = await kclient.AppsV1Api(kube_client).read_namespaced_deployment(f"meshlet-{c}", ns)
            assert dep.spec.template.spec.service_account_name == f"meshlet-{c}"
        # each component's ServiceAccount may do what its process does, and not more
        authz = kclient.AuthorizationV1Api(kube_client)

        async def allowed(component: str, verb: str, group: str, resource: str, namespace: str | None = None,
                          name: str | None = None) -> bool:
            review = kclient.V1SubjectAccessReview(spec=kclient.V1SubjectAccessReviewSpec(
                user=f"system:serviceaccount:{ns}:meshlet-{component}",
                groups=["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
                resource_attributes=kclient.V1ResourceAttributes(verb=verb, group=group, resource=resource,
                                                                 namespace=namespace, name=name)))
            return bool((await authz.create_subject_access_review(review)).status.allowed)

        for verb in ("list", "watch"):
            for group, resource in (("", "services"), ("discovery.k8s.io", "endpointslices"), ("", "pods"),
                                    ("", "namespaces"), ("networking.istio.io", "virtualservices"),
                                    ("networking.istio.io", "destinationrules"), ("", "secrets")):
                assert await allowed("destination", verb, group, resource), (verb, resource)
        assert await allowed("identity", "create", "authentication.k8s.io", "tokenreviews")
        assert await allowed("identity", "get", "", "secrets", ns, "meshlet-identity-issuer")
        assert not await allowed("identity", "get", "", "secrets", ns, "some-other-secret")
        assert await allowed("injector", "get", "", "namespaces", None, "bookinfo")
        assert await allowed("injector", "create", "", "configmaps", "bookinfo")
        assert not await allowed("injector", "get", "", "secrets", ns, "meshlet-identity-issuer")
        assert not await allowed("destination", "create", "", "pods", "bookinfo")

        # applying the same output again is a no-op, as with kubectl apply
        await apply(kube_client, docs_of(out.stdout))
        # and the apply is strict: the objects above were accepted field for field
        bogus = next(d for d in docs_of(out.stdout) if d["kind"] == "Service")
        bogus["spec"]["portz"] = []
        with pytest.raises((ApiException, ApplyFailed), match="portz"):
            await apply(kube_client, [bogus])
    finally:
        await delete_cluster_objects(kube_client, ns)
