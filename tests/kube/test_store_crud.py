"""KubeStore against a real kube-apiserver: get/list/apply/delete/update_status for every kind it reads,
apply's validate-first and partial-failure reporting, odd objects skipped, permission errors."""
from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import pytest
from crds_helpers import ensure_crds, wait_served
from kubernetes_asyncio import client as kclient
from meshlet.controller.model import (
    Deployment,
    LabelSelector,
    Namespace,
    ObjectMeta,
    Pod,
    Resource,
    Service,
    ServiceAccount,
    load_text,
)
from meshlet.controller.model.core import (
    Container,
    ContainerStatus,
    DeploymentSpec,
    DeploymentStatus,
    PodSpec,
    PodStatus,
    PodTemplateSpec,
    ServicePort,
    ServiceSpec,
)
from meshlet.controller.model.kinds import KINDS
from meshlet.controller.model.kube_core import Endpoint, EndpointPort, EndpointSlice, Secret, secret_from_bytes
from meshlet.controller.model.meta import TemplateMeta
from meshlet.controller.model.registry import KindInfo, Registry
from meshlet.controller.store import Action, Conflict, Invalid, NotFound, StoreError
from meshlet.controller.store.kube import KubeStore
from meshlet.e2e.kubeapi import KubeAPIServer
from store_helpers import RecordingLog, Relay, kube_store, kubeconfig_via


def meta(name: str, ns: str | None = None, **labels: str) -> ObjectMeta:
    return ObjectMeta(name=name, namespace=ns, labels=dict(labels))


def service(name: str, ns: str, port: int = 80) -> Service:
    return Service(metadata=meta(name, ns), spec=ServiceSpec(selector={"app": name},
                                                             ports=(ServicePort(port, name="http"),)))


def pod(name: str, ns: str) -> Pod:
    return Pod(metadata=meta(name, ns, app="web"),
               spec=PodSpec(containers=(Container(name="web", image="nginx:1.27"),)))


async def test_namespace_and_service_lifecycle(kube_api: KubeAPIServer) -> None:
    ns = f"s-{uuid.uuid4().hex[:8]}"
    async with kube_store(kube_api) as store:
        results = await store.apply([Namespace(metadata=meta(ns)), service("web", ns)])
        assert [r.action for r in results] == [Action.CREATED, Action.CREATED]
        svc = results[1].resource
        assert isinstance(svc, Service) and svc.metadata.resource_version > 0 and svc.metadata.uid
        assert svc.spec.cluster_ip and svc.spec.cluster_ip.startswith("10.96.")  # the API server allocated it

        got = await store.get("svc", ns, "web")
        assert got == svc
        assert (await store.get("Namespace", None, ns)).metadata.name == ns
        items, rv = await store.list("services", ns)
        assert [s.metadata.name for s in items] == ["web"] and rv >= svc.metadata.resource_version

        again = await store.apply([service("web", ns)])
        assert again[0].action is Action.UNCHANGED
        assert again[0].resource.metadata.resource_version == svc.metadata.resource_version

        changed = await store.apply([service("web", ns, port=8080)])
        assert changed[0].action is Action.CONFIGURED
        assert changed[0].resource.spec.ports[0].port == 8080
        assert changed[0].resource.spec.cluster_ip == svc.spec.cluster_ip

        with pytest.raises(Conflict):
            await store.apply([replace(service("web", ns, port=9090), metadata=svc.metadata)])  # stale version

        assert await store.delete("Service", ns, "web") is True
        assert await store.get("Service", ns, "web") is None
        assert await store.delete("Service", ns, "web") is False
        assert await store.get("Service", ns, "nothing") is None


async def test_pod_status_subresource(kube_api: KubeAPIServer, kube_ns: str) -> None:
    async with kube_store(kube_api) as store:
        (created,) = await store.apply([pod("web-1", kube_ns)])
        stored = created.resource
        assert isinstance(stored, Pod) and stored.status is not None and stored.status.phase == "Pending"

        running = stored.with_status(PodStatus(phase="Running", pod_ip="10.244.0.7", ready=True,
                                               container_statuses=(ContainerStatus("web", True, 0, "running"),)))
        updated = await store.update_status(running)
        assert updated.status.pod_ip == "10.244.0.7" and updated.status.ready is True
        assert updated.status.container_statuses[0].state == "running"
        assert updated.metadata.resource_version > stored.metadata.resource_version
        assert (await store.get("Pod", kube_ns, "web-1")).status == updated.status

        with pytest.raises(Conflict):
            await store.update_status(running)  # carries the version before the update
        unversioned = running.with_meta(resource_version=0).with_status(replace(running.status, ready=False))
        assert (await store.update_status(unversioned)).status.ready is False
        with pytest.raises(NotFound):
            await store.update_status(pod("nope", kube_ns).with_status(PodStatus()))

        items, _ = await store.list("Pod", kube_ns)
        assert [p.metadata.name for p in items] == ["web-1"]


async def test_serviceaccount_deployment_endpointslice_secret(kube_api: KubeAPIServer, kube_ns: str) -> None:
    deploy = Deployment(metadata=meta("web", kube_ns), spec=DeploymentSpec(
        selector=LabelSelector({"app": "web"}),
        template=PodTemplateSpec(metadata=TemplateMeta(labels={"app": "web"}),
                                 spec=PodSpec(containers=(Container(name="web", image="nginx:1.27"),)))))
    es = EndpointSlice(metadata=meta("web-abc", kube_ns, **{"kubernetes.io/service-name": "web"}),
                       address_type="IPv4", endpoints=(Endpoint(addresses=("10.244.0.7",)),),
                       ports=(EndpointPort(name="http", port=80),))
    secret = secret_from_bytes("issuer", kube_ns, {"tls.crt": b"CERT\x00\xff", "tls.key": b"KEY"}, "kubernetes.io/tls")
    async with kube_store(kube_api) as store:
        results = await store.apply([ServiceAccount(metadata=meta("web", kube_ns)), deploy, es, secret])
        assert [r.action for r in results] == [Action.CREATED] * 4
        assert (await store.get("sa", kube_ns, "web")).metadata.name == "web"
        names = [sa.metadata.name for sa in (await store.list("ServiceAccount", kube_ns))[0]]
        assert names == ["default", "web"]

        d = await store.get("deploy", kube_ns, "web")
        assert isinstance(d, Deployment) and d.spec.replicas == 1 and d.spec.template.spec.containers[0].name == "web"
        d2 = await store.update_status(d.with_status(DeploymentStatus(replicas=1, ready_replicas=1)))
        assert d2.status.ready_replicas == 1

        got_es = await store.get("EndpointSlice", kube_ns, "web-abc")
        assert isinstance(got_es, EndpointSlice) and got_es.service_name == "web"
        assert got_es.endpoints[0].addresses == ("10.244.0.7",) and got_es.ports[0].port == 80
        moved = replace(es, endpoints=(Endpoint(addresses=("10.244.0.8",)),))
        assert (await store.apply([moved]))[0].action is Action.CONFIGURED

        got_secret = await store.get("secrets", kube_ns, "issuer")
        assert isinstance(got_secret, Secret) and got_secret.type == "kubernetes.io/tls"
        assert got_secret.value("tls.crt") == b"CERT\x00\xff"
        text = Secret(metadata=meta("text", kube_ns), string_data={"token": "abc"})
        await store.apply([text])
        assert (await store.get("Secret", kube_ns, "text")).data == {"token": base64.b64encode(b"abc").decode()}

        for kind, name in (("EndpointSlice", "web-abc"), ("Secret", "issuer"), ("Deployment", "web")):
            assert await store.delete(kind, kube_ns, name) is True
            assert await store.get(kind, kube_ns, name) is None


SEED_LIKE = """
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"""


async def test_istio_and_meshlet_crd_kinds(kube_api: KubeAPIServer, kube_client: kclient.ApiClient,
                                           kube_ns: str) -> None:
    await ensure_crds(kube_client)
    await wait_served(kube_client, "networking.istio.io", "v1", "virtualservices")
    await wait_served(kube_client, "meshlet.io", "v1alpha1", "meshconfigs")
    docs = load_text(SEED_LIKE, namespace=kube_ns)
    async with kube_store(kube_api) as store:
        results = await store.apply(docs)
        assert [r.action for r in results] == [Action.CREATED, Action.CREATED]
        vs = await store.get("vs", kube_ns, "reviews")
        assert vs.spec.hosts == ("reviews",) and vs.spec.http[0].route[0].destination.subset == "v2"
        dr = (await store.list("DestinationRule", kube_ns))[0]
        assert [s.name for s in dr[0].spec.subsets] == ["v1", "v2"]
        assert (await store.apply(docs))[0].action is Action.UNCHANGED

        # MeshConfig is cluster-scoped and named "default": shared by every test of the session, so it is
        # only created (and removed again) when no other test left one
        if await store.get("MeshConfig", None, "default") is None:
            mesh = load_text("apiVersion: meshlet.io/v1alpha1\nkind: MeshConfig\nmetadata: {name: default}\n"
                             "spec: {outboundTrafficPolicy: {mode: ALLOW_ANY}}\n")[0]
            (stored,) = await store.apply([mesh])
            assert stored.action is Action.CREATED and stored.resource.metadata.namespace is None
            got = await store.get("MeshConfig", None, "default")
            assert got.spec.outbound_traffic_policy.mode == "ALLOW_ANY"
            assert await store.delete("MeshConfig", None, "default") is True
        assert await store.delete("VirtualService", kube_ns, "reviews") is True

        # a kind the server does not serve (no CRD for meshlet's internal WorkloadToken): empty, not an error
        items, rv = await store.list("WorkloadToken")
        assert items == [] and rv > 0


async def test_apply_validates_everything_before_writing_anything(kube_api: KubeAPIServer, kube_ns: str) -> None:
    bad = Service(metadata=meta("Bad_Name", kube_ns))
    async with kube_store(kube_api) as store:
        with pytest.raises(Invalid) as e:
            await store.apply([service("first", kube_ns), bad])
        assert "Bad_Name" in str(e.value)
        assert await store.get("Service", kube_ns, "first") is None


async def test_partial_failure_says_what_was_applied(kube_api: KubeAPIServer, kube_ns: str) -> None:
    async with kube_store(kube_api) as store:
        with pytest.raises(Invalid) as e:
            await store.apply([service("one", kube_ns), service("two", "no-such-ns"), service("three", kube_ns)])
        message = str(e.value)
        assert "namespace 'no-such-ns' not found" in message
        assert "applied before the failure: service/one" in message and "not attempted: service/three" in message
        assert [r.resource.metadata.name for r in e.value.applied] == ["one"]  # type: ignore[attr-defined]
        assert await store.get("Service", kube_ns, "one") is not None
        assert await store.get("Service", kube_ns, "three") is None


async def test_a_user_without_rights_gets_a_clear_error(kube_api: KubeAPIServer, kube_ns: str) -> None:
    async with kube_store(kube_api, kubeconfig=kube_api.kubeconfig_for("viewer")) as store:
        with pytest.raises(StoreError, match="refused \\(403"):
            await store.list("Service", kube_ns)
        with pytest.raises(StoreError, match="403"):
            await store.apply([service("web", kube_ns)])


async def test_a_missing_kubeconfig_is_a_store_error(tmp_path: Any) -> None:
    from meshlet.controller.store.kube import KubeStoreConfig

    with pytest.raises(StoreError, match="does not exist"):
        await KubeStore.connect(KubeStoreConfig(kubeconfig=tmp_path / "nope"))


# === odd objects: a test CRD whose schema lets through what meshlet's model refuses ===

@dataclass(frozen=True)
class WidgetSpec:
    size: int = 0


@dataclass(frozen=True, kw_only=True)
class Widget(Resource):
    api_version: ClassVar[str] = "test.meshlet.io/v1"
    kind: ClassVar[str] = "Widget"
    spec: WidgetSpec = field(default_factory=WidgetSpec)


WIDGETS = Registry([*KINDS, KindInfo(Widget, "widgets")])
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.meshlet.io"},
    "spec": {"group": "test.meshlet.io", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


async def ensure_widgets(store: KubeStore) -> None:
    from meshlet.controller.store.kube.transport import ApiError

    try:
        await store.transport.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                      body=WIDGET_CRD)
    except ApiError as e:
        if e.status != 409:
            raise
    deadline = time.monotonic() + 60
    while True:
        try:
            await store.transport.request("GET", "/apis/test.meshlet.io/v1/widgets")
            return
        except ApiError as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


async def create_widget(store: KubeStore, ns: str, name: str, size: Any) -> dict[str, Any]:
    return await store.transport.request(
        "POST", f"/apis/test.meshlet.io/v1/namespaces/{ns}/widgets",
        body={"apiVersion": "test.meshlet.io/v1", "kind": "Widget", "metadata": {"name": name},
              "spec": {"size": size, "extra": {"unknown": True}}})


async def test_an_odd_object_is_skipped_and_the_others_are_read(kube_api: KubeAPIServer, kube_ns: str) -> None:
    log = RecordingLog()
    async with kube_store(kube_api) as plain:
        store = KubeStore(plain.transport, plain.cfg, registry=WIDGETS, log=log)
        await ensure_widgets(store)
        await create_widget(store, kube_ns, "good", 3)
        await create_widget(store, kube_ns, "odd", "big")  # the model says size is an integer
        items, _ = await store.list("widgets", kube_ns)
        assert [(w.metadata.name, w.spec.size) for w in items] == [("good", 3)]
        assert ("object.skipped", {"object": f"widget.test.meshlet.io {kube_ns}/odd"}) in [
            (event, {"object": fields.get("object")}) for event, fields in log.records]
        with pytest.raises(StoreError, match="odd"):
            await store.get("Widget", kube_ns, "odd")


async def test_lists_follow_continue_tokens(kube_api: KubeAPIServer, kube_ns: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import meshlet.controller.store.kube.store as store_module

    monkeypatch.setattr(store_module, "PAGE", 2)  # 5 objects: three pages
    async with kube_store(kube_api) as store:
        await store.apply([service(f"s{i}", kube_ns) for i in range(5)])
        items, rv = await store.list("Service", kube_ns)
        assert [s.metadata.name for s in items] == [f"s{i}" for i in range(5)]
        assert rv >= max(s.metadata.resource_version for s in items)


async def test_an_unreachable_api_server_is_named(kube_api: KubeAPIServer, tmp_path: Any) -> None:
    relay = await Relay(kube_api.port).start()
    port = relay.port
    await relay.close()  # nothing listens there any more
    async with kube_store(kube_api, kubeconfig=kubeconfig_via(kube_api, port, tmp_path / "kc")) as store:
        with pytest.raises(StoreError, match=f"cannot reach the API server.*127.0.0.1:{port}"):
            await store.list("Service", "default")
