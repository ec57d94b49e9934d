"""EndpointSlices -> endpoints (pure translation) and through the index/watcher; the store path with SQLite.

The real-path test against a kube-apiserver is tests/kube/test_destination_endpointslice.py.
"""
import asyncio

import pytest
import structlog
from dst_helpers import TD, Recorder, pod, service
from meshlet.controller.model import Namespace, ObjectMeta
from meshlet.controller.model.kube_core import (
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    ObjectReference,
)
from meshlet.controller.store import SqliteStore
from meshlet.destination.endpointslice import is_meshed, slice_addresses, slice_port
from meshlet.destination.index import EndpointIndex
from meshlet.destination.targets import IpTarget, ServiceTarget
from meshlet.destination.watcher import EndpointsWatcher

WEB = ServiceTarget("shop", "web", 80)


def ep(ip, pod_name=None, ready=None, ns=None):
    ref = ObjectReference(kind="Pod", name=pod_name, namespace=ns) if pod_name else None
    return Endpoint(addresses=(ip,), conditions=EndpointConditions(ready=ready), target_ref=ref)


def eps(name, endpoints, *, svc="web", ns="shop", port=8080, port_name="http", address_type="IPv4"):
    return EndpointSlice(
        metadata=ObjectMeta(name=name, namespace=ns, labels={"kubernetes.io/service-name": svc} if svc else {}),
        address_type=address_type, endpoints=tuple(endpoints),
        ports=(EndpointPort(name=port_name, port=port, protocol="TCP"),),
    )


def ids(addresses):
    return [f"{a.ip}:{a.port}" for a in addresses]


def spiffe(ns, sa):
    return f"spiffe://{TD}/ns/{ns}/sa/{sa}"


def test_ports_match_by_service_port_name():
    svc = service("web")  # port 80 named "http"
    assert slice_port(svc, 80, eps("a", [], port=9090)) == 9090
    assert slice_port(svc, 80, eps("a", [], port=9090, port_name="grpc")) is None
    assert slice_port(svc, 81, eps("a", [], port=9090)) == 81  # undeclared port: as is


def test_ready_conditions_identity_and_labels():
    pods = {("shop", "web-0"): pod("web-0", "10.0.0.1", labels={"version": "v1"}),
            ("shop", "web-1"): pod("web-1", "10.0.0.2", meshed=False)}
    slices = [
        eps("web-a", [ep("10.0.0.1", "web-0"), ep("10.0.0.2", "web-1", ready=True), ep("10.0.0.3", ready=False)]),
        eps("web-b", [ep("10.0.0.4", "gone-pod"), ep("10.0.0.1", "web-0")]),  # duplicate address counts once
        eps("web-c", [ep("10.0.0.5")], port_name="other"),  # another port: nothing for :80
        eps("web-d", [ep("web.example.com")], address_type="FQDN"),
    ]
    found = slice_addresses(service("web"), 80, slices, lambda ns, n: pods.get((ns, n)), spiffe)
    assert ids(found) == ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.4:8080"]
    meshed, plain, unknown = found
    assert meshed.identity == spiffe("shop", "web") and meshed.pod == "web-0"
    assert dict(meshed.labels) == {"app": "web", "version": "v1"}
    assert plain.identity is None and plain.service_account == "web"
    assert unknown.identity is None and unknown.pod == "gone-pod" and not unknown.labels


def test_injector_annotation_marks_meshed():
    p = pod("web-0", "10.0.0.1", meshed=False)
    assert not is_meshed(p)
    annotated = type(p)(metadata=ObjectMeta(name="web-0", namespace="shop",
                                            annotations={"meshlet.io/proxy-version": "0.1.0"}), spec=p.spec)
    assert is_meshed(annotated)


def _watcher(services=(), pods=(), slices=()):
    w = EndpointsWatcher(trust_domain=TD, log=structlog.get_logger())
    w.load(list(services), list(pods), None, list(slices))
    return w


def test_slices_replace_the_selector_once_present():
    # A selector-less Service (endpoints managed by hand) and the pods' own phase do not matter.
    w = _watcher([service("web", selector={})], [pod("web-0", "10.0.0.1", phase="Pending", ready=False)])
    r = Recorder()
    w.subscribe(WEB, r)
    assert r.take() == [("none", True)]
    w.apply("ADDED", eps("web-a", [ep("10.0.0.1", "web-0"), ep("10.0.0.2")]))
    w.publish()
    assert r.take() == [("add", ["10.0.0.1:8080", "10.0.0.2:8080"])]
    # not ready -> removed; then the slice goes away
    w.apply("MODIFIED", eps("web-a", [ep("10.0.0.1", "web-0", ready=False), ep("10.0.0.2")]))
    w.publish()
    assert r.take() == [("remove", ["10.0.0.1:8080"])]
    w.apply("DELETED", eps("web-a", []))
    w.publish()
    assert r.take() == [("remove", ["10.0.0.2:8080"]), ("none", True)]


def test_slice_relabelled_to_another_service():
    w = _watcher([service("web", selector={}), service("api", selector={})], slices=[eps("s", [ep("10.0.0.1")])])
    r = Recorder()
    w.subscribe(WEB, r)
    assert r.take() == [("add", ["10.0.0.1:8080"])]
    w.apply("MODIFIED", eps("s", [ep("10.0.0.1")], svc="api"))
    w.publish()
    assert r.take() == [("remove", ["10.0.0.1:8080"]), ("none", True)]
    index: EndpointIndex = w.index
    assert [s.metadata.name for s in index.slices("shop", "api")] == ["s"]


def test_local_mode_unchanged_without_slices():
    w = _watcher([service("web", target_port="http", cluster_ip="198.19.0.9")], [pod("web-0", "198.18.0.10")])
    assert ids(w.resolve(WEB).sorted()) == ["198.18.0.10:8080"]
    assert ids(w.resolve(IpTarget("198.19.0.9", 80)).sorted()) == ["198.18.0.10:8080"]


async def test_watcher_follows_slices_in_a_store(tmp_path):
    """The store path (list, then watch) with the SQLite store, which knows the EndpointSlice kind too."""
    store = SqliteStore(tmp_path / "store.db", poll_interval=0.02)
    await store.apply([Namespace(metadata=ObjectMeta(name="shop")), service("web", selector={})])
    w = EndpointsWatcher(trust_domain=TD, log=structlog.get_logger())
    task = asyncio.create_task(w.run(store))
    try:
        await asyncio.wait_for(w.wait_ready(), 30)
        r = Recorder()
        w.subscribe(WEB, r)
        assert r.take() == [("none", True)]
        await store.apply([eps("web-a", [ep("10.0.0.7")])])
        events = await _wait_events(r)
        assert events == [("add", ["10.0.0.7:8080"])]
        await store.delete("EndpointSlice", "shop", "web-a")
        assert await _wait_events(r) == [("remove", ["10.0.0.7:8080"]), ("none", True)]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.close()


async def _wait_events(r: Recorder, timeout: float = 30) -> list[tuple]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not r.events and loop.time() < deadline:
        await asyncio.sleep(0.02)
    return r.take()  # one publish delivers all of a change's updates at once
