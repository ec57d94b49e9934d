"""KubeStore and a real 410 Gone: a caller's `since` older than the server's history raises Gone;
a watch whose resume point fell out of the history lists again and reports only the differences.

A default kube-apiserver answers old watches from its watch cache, which keeps its whole history
until it fills up (so a fresh test server almost never says 410). This module runs its own API
server with `--watch-cache=false`, so watches reach etcd, and compacts etcd as kube-apiserver does
every 5 minutes: the 410 Expired the store sees is the server's own.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from meshlet.controller.model import Namespace, ObjectMeta, Service
from meshlet.controller.model.core import ServicePort, ServiceSpec
from meshlet.controller.store import EventType, Gone
from meshlet.e2e.kubeapi import KubeAPIServer, KubeTools
from store_helpers import Collector, Relay, compact_etcd, kube_store, kubeconfig_via, seen


@pytest.fixture(scope="module")
def api_without_cache(kube_tools: KubeTools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    # watches served by etcd directly, so an old resourceVersion gets a real 410
    with KubeAPIServer(kube_tools, tmp_path_factory.mktemp("kube-apiserver-nocache"),
                       apiserver_args=("--watch-cache=false",)) as api:
        yield api


def service(name: str, ns: str, port: int = 80) -> Service:
    return Service(metadata=ObjectMeta(name=name, namespace=ns),
                   spec=ServiceSpec(selector={"app": name}, ports=(ServicePort(port, name="http"),)))


async def test_a_since_older_than_the_servers_history_raises_gone(api_without_cache: KubeAPIServer) -> None:
    ns = f"g-{uuid.uuid4().hex[:8]}"
    async with kube_store(api_without_cache) as store:
        await store.apply([Namespace(metadata=ObjectMeta(name=ns)), service("web", ns)])
        _, old = await store.list("Service", ns)
        # two changes after `old`: the watch would start at old+1, below the compacted revision
        # (a single change would leave old+1 == the compacted revision, which etcd still serves)
        await store.apply([service("web", ns, port=81)])
        await store.apply([service("web", ns, port=82)])
        await compact_etcd(api_without_cache)
        watch = Collector(store, {"Service"}, since=old)
        error = await watch.wait_error()
        assert isinstance(error, Gone) and "too old" in str(error)


async def test_relists_and_reports_only_differences_after_gone(api_without_cache: KubeAPIServer,
                                                               tmp_path: Path) -> None:
    """The watch's connection is cut, objects change meanwhile and the history is compacted past
    the watch's resume point: the resume gets 410, the store lists again and reports only what changed."""
    ns = f"g-{uuid.uuid4().hex[:8]}"
    relay = await Relay(api_without_cache.port).start()
    try:
        async with kube_store(api_without_cache) as admin, \
                kube_store(api_without_cache, kubeconfig=kubeconfig_via(api_without_cache, relay.port, tmp_path / "kc"),
                           backoff_initial=0.05) as store:
            await admin.apply([Namespace(metadata=ObjectMeta(name=ns)), service("keep", ns), service("change", ns),
                               service("drop", ns)])
            watch = Collector(store, {"Service"}, namespace=ns)
            try:
                await watch.wait_for(lambda evs: len(evs) >= 3, what="the snapshot")
                (reflector,) = store.reflectors
                relay.hold()  # the store's resume waits until everything below has happened
                assert relay.cut() >= 1
                await admin.apply([service("change", ns, port=8080), service("new", ns)])
                await admin.delete("Service", ns, "drop")
                await compact_etcd(api_without_cache)
                relay.release()
                await watch.wait_for(lambda evs: seen(evs, "ADDED", "Service", "new")
                                     and seen(evs, "DELETED", "Service", "drop")
                                     and seen(evs, "MODIFIED", "Service", "change"))
                assert sorted(watch.brief()[:3]) == [("ADDED", "Service", "change"), ("ADDED", "Service", "drop"),
                                                     ("ADDED", "Service", "keep")]
                # "keep" did not change: not reported again
                assert sorted(watch.brief()[3:]) == [("ADDED", "Service", "new"), ("DELETED", "Service", "drop"),
                                                     ("MODIFIED", "Service", "change")]
                assert reflector.relists >= 1
                changed = [e for e in watch.events if e.type is EventType.MODIFIED][0].resource
                assert changed.spec.ports[0].port == 8080
            finally:
                await watch.close()
    finally:
        await relay.close()
