"""The injector process as a mutating webhook of a real kube-apiserver: pods created through the API
come back (and are stored) with meshlet-proxy and meshlet-init exactly when Istio's rules say so."""
from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from injector_helpers import (
    INJECTOR_RULES,
    SELECTOR_LABEL,
    InjectorProcess,
    make_namespace,
    pod_body,
    service_account_kubeconfig,
    start_injector,
    webhook_configuration,
)
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.client.exceptions import ApiException
from meshlet.e2e.kubeapi import KubeAPIServer

TRUST_PEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"


def container_names(pod: kclient.V1Pod) -> tuple[list[str], list[str]]:
    return ([c.name for c in pod.spec.init_containers or []], [c.name for c in pod.spec.containers])


def injected(pod: kclient.V1Pod) -> bool:
    inits, containers = container_names(pod)
    return "meshlet-proxy" in inits + containers


class Webhook:
    def __init__(self, api: kclient.ApiClient, inj: InjectorProcess, cp_ns: str) -> None:
        self.api, self.inj, self.cp_ns = api, inj, cp_ns
        self.core = kclient.CoreV1Api(api)

    async def namespace(self, labels: dict[str, str], annotations: dict[str, str] | None = None) -> str:
        return await make_namespace(self.api, {SELECTOR_LABEL: self.inj.selector, **labels}, annotations)

    async def create(self, ns: str, body: dict) -> kclient.V1Pod:
        await self.core.create_namespaced_pod(ns, body)
        return await self.core.read_namespaced_pod(body["metadata"]["name"], ns)


@contextlib.asynccontextmanager
async def serving(kube_client: kclient.ApiClient, kubeconfig: Path, workdir: Path) -> AsyncIterator[Webhook]:
    """The injector process (with this kubeconfig) registered as a webhook for this test's namespaces."""
    core = kclient.CoreV1Api(kube_client)
    cp_ns = await make_namespace(kube_client, {})
    await core.create_namespaced_config_map(cp_ns, kclient.V1ConfigMap(
        metadata=kclient.V1ObjectMeta(name="meshlet-identity-trust-roots"), data={"ca-bundle.crt": TRUST_PEM}))
    inj = await asyncio.to_thread(start_injector, workdir, kubeconfig, cp_ns)
    reg = kclient.AdmissionregistrationV1Api(kube_client)
    name = f"meshlet-test-injector-{inj.selector}"
    try:
        await reg.create_mutating_webhook_configuration(webhook_configuration(inj, name))
        try:
            yield Webhook(kube_client, inj, cp_ns)
        finally:
            await reg.delete_mutating_webhook_configuration(name)
    finally:
        code = await asyncio.to_thread(inj.stop)
    assert code == 0, f"injector did not stop cleanly on SIGTERM ({code}):\n{inj.log()}"


async def wait_until_called(hook: Webhook) -> None:
    """The API server picks up a new webhook configuration within moments: probe with dry runs."""
    probe_ns = await hook.namespace({"istio-injection": "enabled"})
    before = hook.inj.reviews()
    deadline = time.monotonic() + 60
    while True:
        await hook.core.create_namespaced_pod(probe_ns, pod_body("probe"), dry_run="All")
        if hook.inj.reviews() > before:
            return
        assert time.monotonic() < deadline, f"webhook never called:\n{hook.inj.log()}"
        await asyncio.sleep(0.5)


@pytest.fixture
async def webhook(kube_api: KubeAPIServer, kube_client: kclient.ApiClient, tmp_path: Path) -> AsyncIterator[Webhook]:
    async with serving(kube_client, kube_api.kubeconfig, tmp_path) as hook:
        await wait_until_called(hook)
        yield hook


async def test_injection_follows_namespace_and_pod_labels(webhook: Webhook) -> None:
    istio_ns = await webhook.namespace({"istio-injection": "enabled"})
    meshlet_ns = await webhook.namespace({"meshlet.io/inject": "enabled"},
                                         {"config.meshlet.io/proxy-cpu-request": "120m"})
    plain_ns = await webhook.namespace({})

    pod = await webhook.create(istio_ns, pod_body("web", annotations={
        "traffic.sidecar.istio.io/excludeInboundPorts": "9100", "sidecar.istio.io/proxyCPU": "150m"}))
    inits, containers = container_names(pod)
    assert inits == ["meshlet-init", "meshlet-proxy"], webhook.inj.log()  # native sidecar on 1.29+
    assert containers == ["web"]
    proxy = pod.spec.init_containers[1]
    assert proxy.restart_policy == "Always"
    assert proxy.image == "meshlet/meshlet:test"
    assert proxy.security_context.run_as_user == 1337 and proxy.security_context.run_as_group == 1337
    assert proxy.resources.requests["cpu"] == "150m"
    assert {p.name: p.container_port for p in proxy.ports}["mlt-health"] == 15021
    assert proxy.readiness_probe.http_get.port == 15021
    env = {e.name: e for e in proxy.env}
    assert env["MESHLET_PROXY_POD_IP"].value_from.field_ref.field_path == "status.podIP"
    assert env["MESHLET_PROXY_IDENTITY_ADDR"].value == f"meshlet-identity.{webhook.cp_ns}.svc.cluster.local:8080"
    assert env["MESHLET_PROXY_IDENTITY_SERVER_NAME"].value == f"meshlet-identity.{webhook.cp_ns}.svc"
    init = pod.spec.init_containers[0]
    assert init.command[:3] == ["python", "-m", "meshlet.proxy.init"] and "9100" in init.command
    assert set(init.security_context.capabilities.add) == {"NET_ADMIN", "NET_RAW"}
    vols = {v.name: v for v in pod.spec.volumes}
    token = vols["meshlet-identity-token"].projected.sources[0].service_account_token
    assert token.audience == "identity.meshlet.io" and token.expiration_seconds == 3600
    assert vols["meshlet-trust-roots"].config_map.name == "meshlet-identity-trust-roots"
    assert json.loads(pod.metadata.annotations["meshlet.io/inject-status"])["initContainers"] == \
        ["meshlet-init", "meshlet-proxy"]
    assert pod.metadata.annotations["meshlet.io/proxy-version"]

    from_ns = await webhook.create(meshlet_ns, pod_body("web"))
    assert injected(from_ns)
    # the namespace's config.meshlet.io/* annotations apply unless the pod sets its own
    assert from_ns.spec.init_containers[1].resources.requests["cpu"] == "120m"
    own = await webhook.create(meshlet_ns, pod_body("own", annotations={"config.meshlet.io/proxy-cpu-request": "80m"}))
    assert own.spec.init_containers[1].resources.requests["cpu"] == "80m"
    assert not injected(await webhook.create(
        istio_ns, pod_body("opted-out", annotations={"sidecar.istio.io/inject": "false"})))
    assert not injected(await webhook.create(
        istio_ns, pod_body("opted-out-label", labels={"app": "x", "sidecar.istio.io/inject": "false"})))
    assert not injected(await webhook.create(plain_ns, pod_body("web")))
    assert injected(await webhook.create(
        plain_ns, pod_body("opted-in", labels={"app": "x", "sidecar.istio.io/inject": "true"})))

    # the proxies' trust roots were copied into the injected pods' namespaces, not elsewhere
    for ns in (istio_ns, meshlet_ns):
        cm = await webhook.core.read_namespaced_config_map("meshlet-identity-trust-roots", ns)
        assert cm.data["ca-bundle.crt"] == TRUST_PEM
    assert await asyncio.to_thread(webhook.inj.reviews, "injected") >= 3
    assert await asyncio.to_thread(webhook.inj.reviews, "skipped") >= 3


async def test_injection_is_idempotent_and_bad_annotations_are_refused(webhook: Webhook) -> None:
    ns = await webhook.namespace({"istio-injection": "enabled"})
    first = await webhook.create(ns, pod_body("first"))
    assert injected(first)
    # a pod whose spec already carries the sidecar (e.g. `meshlet inject` output) is left as it is
    again = kclient.ApiClient().sanitize_for_serialization(first)
    again["metadata"] = {"name": "again", "annotations": first.metadata.annotations, "labels": {"app": "web"}}
    again.pop("status", None)
    again["spec"].pop("nodeName", None)
    second = await webhook.create(ns, again)
    inits, containers = container_names(second)
    assert inits.count("meshlet-proxy") == 1 and inits.count("meshlet-init") == 1
    assert containers == ["web"]

    with pytest.raises(ApiException) as e:
        await webhook.core.create_namespaced_pod(
            ns, pod_body("bad", annotations={"sidecar.istio.io/proxyMemory": "plenty"}))
    assert e.value.status == 400
    assert "sidecar.istio.io/proxyMemory" in e.value.body
    with pytest.raises(ApiException):
        await webhook.core.read_namespaced_pod("bad", ns)


async def test_malformed_review_through_the_process_is_a_400(webhook: Webhook) -> None:
    ctx = ssl.create_default_context(cadata=webhook.inj.ca_pem.decode())
    req = urllib.request.Request(f"https://127.0.0.1:{webhook.inj.port}/inject", data=b'{"kind": "Pod"}',
                                 headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        await asyncio.to_thread(urllib.request.urlopen, req, timeout=10, context=ctx)
    assert e.value.code == 400 and b"kind must be AdmissionReview" in e.value.read()


async def test_api_errors_let_pods_through_uninjected(kube_api: KubeAPIServer, kube_client: kclient.ApiClient,
                                                      tmp_path: Path) -> None:
    """An injector whose service account may not read namespaces (the `viewer` user) answers
    allowed-without-patch: the pod is created (failurePolicy Fail here, so an error would block it)."""
    async with serving(kube_client, kube_api.kubeconfig_for("viewer"), tmp_path) as hook:
        await wait_until_called(hook)
        ns = await hook.namespace({"istio-injection": "enabled"})
        pod = await hook.create(ns, pod_body("web"))
        assert not injected(pod)
        assert hook.inj.reviews("error") >= 1 and hook.inj.reviews("injected") == 0
        assert "review.failed" in hook.inj.log() and "403" in hook.inj.log()


@pytest.mark.parametrize("may_write_configmaps", [True, False])
async def test_with_the_documented_rbac_only(kube_api: KubeAPIServer, kube_client: kclient.ApiClient,
                                             tmp_path: Path, may_write_configmaps: bool) -> None:
    """The injector as its own RBAC-limited service account: with the rules injector/README.md lists it
    injects and publishes the trust roots; without the configmaps rule it still injects, logs and warns."""
    rules = INJECTOR_RULES if may_write_configmaps else INJECTOR_RULES[:1]
    kubeconfig = await service_account_kubeconfig(kube_client, kube_api.url, kube_api.ca_pem, tmp_path, rules)
    async with serving(kube_client, kubeconfig, tmp_path) as hook:
        await wait_until_called(hook)
        ns = await hook.namespace({"istio-injection": "enabled"})
        assert injected(await hook.create(ns, pod_body("web"))), hook.inj.log()
        if may_write_configmaps:
            cm = await hook.core.read_namespaced_config_map("meshlet-identity-trust-roots", ns)
            assert cm.data["ca-bundle.crt"] == TRUST_PEM
            # a rotated anchor in the control plane reaches the copy (resync every second here)
            rotated = TRUST_PEM.replace("MIIBtest", "MIIBrotated")
            await hook.core.patch_namespaced_config_map("meshlet-identity-trust-roots", hook.cp_ns,
                                                        {"data": {"ca-bundle.crt": rotated}})
            deadline = time.monotonic() + 60
            while (await hook.core.read_namespaced_config_map(
                    "meshlet-identity-trust-roots", ns)).data["ca-bundle.crt"] != rotated:
                assert time.monotonic() < deadline, hook.inj.log()
                await asyncio.sleep(0.5)
        else:
            with pytest.raises(ApiException) as e:
                await hook.core.read_namespaced_config_map("meshlet-identity-trust-roots", ns)
            assert e.value.status == 404
            assert "trust_roots.publish_failed" in hook.inj.log()
