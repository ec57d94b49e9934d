"""KubeStore.watch against a real kube-apiserver: snapshot then changes merged across kinds,
resume after the server ends a watch and after the connection is cut, odd objects skipped
without ending the watch. 410 Gone: test_store_gone.py."""
from __future__ import annotations

from pathlib import Path

from meshlet.controller.model import ObjectMeta, Service
from meshlet.controller.model.core import ServicePort, ServiceSpec
from meshlet.controller.model.kube_core import Endpoint, EndpointSlice
from meshlet.controller.store.kube import KubeStore
from meshlet.e2e.kubeapi import KubeAPIServer
from store_helpers import Collector, RecordingLog, Relay, kube_store, kubeconfig_via, seen
from test_store_crud import WIDGETS, create_widget, ensure_widgets


def service(name: str, ns: str, port: int = 80) -> Service:
    return Service(metadata=ObjectMeta(name=name, namespace=ns),
                   spec=ServiceSpec(selector={"app": name}, ports=(ServicePort(port, name="http"),)))


def endpoint_slice(name: str, ns: str, *addresses: str) -> EndpointSlice:
    return EndpointSlice(metadata=ObjectMeta(name=name, namespace=ns, labels={"kubernetes.io/service-name": name}),
                         address_type="IPv4", endpoints=tuple(Endpoint(addresses=(a,)) for a in addresses))


async def test_snapshot_then_creations_updates_and_deletions(kube_api: KubeAPIServer, kube_ns: str) -> None:
    async with kube_store(kube_api) as store:
        await store.apply([service("before", kube_ns)])
        watch = Collector(store, {"Service", "EndpointSlice"}, namespace=kube_ns)
        try:
            await watch.wait_for(lambda evs: seen(evs, "ADDED", "Service", "before"), what="the snapshot")
            svc = (await store.apply([service("web", kube_ns), endpoint_slice("web", kube_ns, "10.244.0.1")]))[0]
            await store.apply([endpoint_slice("web", kube_ns, "10.244.0.1", "10.244.0.2")])
            await store.delete("Service", kube_ns, "before")
            events = await watch.wait_for(lambda evs: seen(evs, "DELETED", "Service", "before"), what="the delete")
            assert watch.brief() == [
                ("ADDED", "Service", "before"),
                ("ADDED", "Service", "web"), ("ADDED", "EndpointSlice", "web"),
                ("MODIFIED", "EndpointSlice", "web"), ("DELETED", "Service", "before")]
            modified = events[3].resource
            assert [e.addresses for e in modified.endpoints] == [("10.244.0.1",), ("10.244.0.2",)]
            assert events[3].resource_version == modified.metadata.resource_version
            assert events[1].resource.metadata.resource_version == svc.resource.metadata.resource_version
        finally:
            await watch.close()
        assert store.reflectors == []  # closing the watch stopped its per-kind loops


async def test_watch_since_a_version_sees_only_later_changes(kube_api: KubeAPIServer, kube_ns: str) -> None:
    async with kube_store(kube_api) as store:
        await store.apply([service("old", kube_ns)])
        _, rv = await store.list("Service", kube_ns)
        watch = Collector(store, {"Service"}, since=rv, namespace=kube_ns)
        try:
            await store.apply([service("new", kube_ns)])
            await watch.wait_for(lambda evs: seen(evs, "ADDED", "Service", "new"))
            assert watch.brief() == [("ADDED", "Service", "new")]
        finally:
            await watch.close()


async def test_resumes_when_the_server_ends_each_watch(kube_api: KubeAPIServer, kube_ns: str) -> None:
    async with kube_store(kube_api, watch_timeout=1) as store:
        watch = Collector(store, {"Service"}, namespace=kube_ns)
        try:
            for i in range(4):
                await store.apply([service(f"s{i}", kube_ns)])
                await watch.wait_for(lambda evs, i=i: seen(evs, "ADDED", "Service", f"s{i}"))
                (reflector,) = store.reflectors
                before = reflector.resumes
                await watch.wait_for(lambda _: reflector.resumes > before, what="the server to end a watch")
            assert [name for _, _, name in watch.brief()] == ["s0", "s1", "s2", "s3"]
        finally:
            await watch.close()


async def test_resumes_after_the_connection_is_cut(kube_api: KubeAPIServer, kube_ns: str, tmp_path: Path) -> None:
    relay = await Relay(kube_api.port).start()
    try:
        async with kube_store(kube_api) as admin, \
                kube_store(kube_api, kubeconfig=kubeconfig_via(kube_api, relay.port, tmp_path / "kc"),
                           backoff_initial=0.05) as store:
            await admin.apply([service("a", kube_ns)])
            watch = Collector(store, {"Service"}, namespace=kube_ns)
            try:
                await watch.wait_for(lambda evs: seen(evs, "ADDED", "Service", "a"))
                await admin.apply([service("a2", kube_ns)])
                await watch.wait_for(lambda evs: seen(evs, "ADDED", "Service", "a2"))  # the watch stream is up
                (reflector,) = store.reflectors
                assert relay.cut() >= 1
                await admin.apply([service("b", kube_ns)])  # while the watch is down
                await admin.delete("Service", kube_ns, "a")
                await watch.wait_for(lambda evs: seen(evs, "DELETED", "Service", "a"))
                assert watch.brief() == [("ADDED", "Service", "a"), ("ADDED", "Service", "a2"),
                                         ("ADDED", "Service", "b"), ("DELETED", "Service", "a")]
                assert reflector.resumes >= 1 and reflector.relists == 0
            finally:
                await watch.close()
    finally:
        await relay.close()


async def test_an_odd_object_does_not_end_the_watch(kube_api: KubeAPIServer, kube_ns: str) -> None:
    log = RecordingLog()
    async with kube_store(kube_api) as plain:
        store = KubeStore(plain.transport, plain.cfg, registry=WIDGETS, log=log)
        await ensure_widgets(store)
        watch = Collector(store, {"Widget"}, namespace=kube_ns)
        try:
            await create_widget(store, kube_ns, "odd", "big")
            await create_widget(store, kube_ns, "good", 1)
            await watch.wait_for(lambda evs: seen(evs, "ADDED", "Widget", "good"))
            assert watch.brief() == [("ADDED", "Widget", "good")]
            assert any(event == "object.skipped" and str(fields.get("object", "")).endswith(f"{kube_ns}/odd")
                       for event, fields in log.records)
        finally:
            await watch.close()


async def test_watch_of_every_kind_tolerates_kinds_without_crds(kube_api: KubeAPIServer, kube_ns: str) -> None:
    async with kube_store(kube_api, missing_kind_retry=0.5) as store:
        watch = Collector(store, None, namespace=kube_ns)
        try:
            await store.apply([service("web", kube_ns)])
            await watch.wait_for(lambda evs: seen(evs, "ADDED", "Service", "web"))
            assert watch.error is None
        finally:
            await watch.close()
