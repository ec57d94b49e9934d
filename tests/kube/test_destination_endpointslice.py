"""Real path: `python -m meshlet.destination --store kube` streams endpoints from real EndpointSlices.

Services, Pods and EndpointSlices are created through a real kube-apiserver (no
controller-manager runs, so the test writes the slices, as the EndpointSlice
controller would); a real gRPC `Get` client sees the snapshot, then removals.
"""
from __future__ import annotations

import asyncio
import time

import betterproto2
from cp_kube_helpers import TD, Proc, create_service_account
from grpclib.client import Channel
from grpclib.const import Cardinality
from kubernetes_asyncio import client as kclient
from meshlet.api import destination_pb as pb

GET = "/meshlet.destination.v1.Destination/Get"
WAIT = 60.0


def kind(update: pb.Update) -> tuple[str, object]:
    name, value = betterproto2.which_one_of(update, "update")
    if name == "no_endpoints":
        return name, value.exists
    if name == "add":
        return name, sorted(f"{a.addr.ip}:{a.addr.port}" for a in value.addrs)
    return name, sorted(f"{a.ip}:{a.port}" for a in value.addrs)


async def until(stream, expected: tuple[str, object]) -> pb.Update:
    seen = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        msg = await asyncio.wait_for(stream.recv_message(), WAIT)
        assert msg is not None, f"stream ended; seen {seen}"
        if kind(msg) == expected:
            return msg
        seen.append(kind(msg))
    raise AssertionError(f"never got {expected}; got {seen}")


def endpoint(ip: str, pod: str | None = None, ready: bool = True) -> kclient.V1Endpoint:
    ref = kclient.V1ObjectReference(kind="Pod", name=pod) if pod else None
    return kclient.V1Endpoint(addresses=[ip], conditions=kclient.V1EndpointConditions(ready=ready), target_ref=ref)


def endpoint_slice(ns: str, endpoints: list[kclient.V1Endpoint]) -> kclient.V1EndpointSlice:
    return kclient.V1EndpointSlice(
        metadata=kclient.V1ObjectMeta(name="web-abcde", namespace=ns, labels={"kubernetes.io/service-name": "web"}),
        address_type="IPv4", endpoints=endpoints,
        ports=[kclient.DiscoveryV1EndpointPort(name="http", port=8080, protocol="TCP")],
    )


async def test_get_streams_endpoint_slices(kube_api, kube_client, kube_ns, tmp_path):
    core = kclient.CoreV1Api(kube_client)
    discovery = kclient.DiscoveryV1Api(kube_client)
    await create_service_account(kube_client, kube_ns, "web")
    await core.create_namespaced_service(kube_ns, kclient.V1Service(
        metadata=kclient.V1ObjectMeta(name="web"),
        spec=kclient.V1ServiceSpec(selector={"app": "web"},
                                   ports=[kclient.V1ServicePort(name="http", port=80, target_port="http")])))
    # A meshed pod (the injector's annotation); it stays Pending: the slice says whether it is ready.
    await core.create_namespaced_pod(kube_ns, kclient.V1Pod(
        metadata=kclient.V1ObjectMeta(name="web-0", labels={"app": "web", "version": "v1"},
                                      annotations={"meshlet.io/proxy-version": "test"}),
        spec=kclient.V1PodSpec(service_account_name="web", containers=[kclient.V1Container(
            name="app", image="web", ports=[kclient.V1ContainerPort(name="http", container_port=8080)])])))
    await discovery.create_namespaced_endpoint_slice(
        kube_ns, endpoint_slice(kube_ns, [endpoint("10.1.0.1", "web-0"), endpoint("10.1.0.2")]))

    proc = Proc("meshlet.destination", ["--store", "kube", "--kubeconfig", str(kube_api.kubeconfig),
                                        "--trust-domain", TD], tmp_path / "destination.log")
    try:
        await proc.wait_ready(timeout=120)
        channel = Channel("127.0.0.1", proc.port)
        try:
            async with channel.request(GET, Cardinality.UNARY_STREAM, pb.GetDestination, pb.Update,
                                       timeout=300) as stream:
                await stream.send_message(pb.GetDestination(path=f"web.{kube_ns}.svc.cluster.local:80",
                                                            context=pb.CallerContext(namespace=kube_ns)), end=True)
                snapshot = await until(stream, ("add", ["10.1.0.1:8080", "10.1.0.2:8080"]))
                by_ip = {a.addr.ip: a for a in snapshot.add.addrs}
                meshed = by_ip["10.1.0.1"]
                assert meshed.tls_identity is not None, proc.output()
                assert meshed.tls_identity.uri == f"spiffe://{TD}/ns/{kube_ns}/sa/web"
                assert meshed.metric_labels["pod"] == "web-0" and meshed.labels["version"] == "v1"
                assert by_ip["10.1.0.2"].tls_identity is None

                # Not ready any more -> removed.
                await discovery.replace_namespaced_endpoint_slice("web-abcde", kube_ns, endpoint_slice(
                    kube_ns, [endpoint("10.1.0.1", "web-0", ready=False), endpoint("10.1.0.2")]))
                await until(stream, ("remove", ["10.1.0.1:8080"]))
                # Removed from the slice, then the slice deleted -> no endpoints left.
                await discovery.replace_namespaced_endpoint_slice("web-abcde", kube_ns, endpoint_slice(
                    kube_ns, [endpoint("10.1.0.2"), endpoint("10.1.0.3")]))
                await until(stream, ("add", ["10.1.0.3:8080"]))
                await discovery.delete_namespaced_endpoint_slice("web-abcde", kube_ns)
                await until(stream, ("remove", ["10.1.0.2:8080", "10.1.0.3:8080"]))
                await until(stream, ("no_endpoints", True))
                await stream.cancel()
        finally:
            channel.close()
    finally:
        assert proc.stop() == 0, proc.output()
