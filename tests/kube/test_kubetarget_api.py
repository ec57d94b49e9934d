"""KubeMeshTarget against a real kube-apiserver (no kubelet: the tests play the controllers' part).

Bookinfo's manifests are applied for real (server-side apply, Namespaces first);
Deployment availability and pod status are set through the status subresource,
as a controller-manager and kubelet would; exec and logs must fail clearly,
because no kubelet runs to serve them.
"""
from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as kclient
from meshlet.e2e.kubeapi import KubeAPIServer
from meshlet.e2e.kubetarget import KubeMeshTarget, KubeTargetSettings, ManifestError
from meshlet.e2e.scenarios.harness import BOOKINFO_DIR
from meshlet.e2e.target import TargetError, make_target

BOOKINFO_DEPLOYMENTS = {"details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3",
                        "sleep"}


def bookinfo_copy(tmp_path: Path, suffix: str) -> tuple[Path, str, str]:
    """Bookinfo's manifests with namespaces renamed (namespaces are never deleted on this API server)."""
    ns, legacy = f"bookinfo-{suffix}", f"legacy-{suffix}"
    out = tmp_path / "bookinfo"
    out.mkdir()
    for f in BOOKINFO_DIR.glob("*.yaml"):
        text = re.sub(r"(namespace|name): bookinfo$", rf"\1: {ns}", f.read_text(), flags=re.MULTILINE)
        text = re.sub(r"(namespace|name): legacy$", rf"\1: {legacy}", text, flags=re.MULTILINE)
        text = text.replace("productpage.bookinfo", f"productpage.{ns}")
        (out / f.name).write_text(text)
    return out, ns, legacy


def target_for(api: KubeAPIServer, **kw: Any) -> KubeMeshTarget:
    settings = KubeTargetSettings(kubeconfig=api.kubeconfig, control_plane=(), poll_interval=0.2, **kw)
    target = make_target(settings)
    assert isinstance(target, KubeMeshTarget)
    return target


async def set_available(client: kclient.ApiClient, ns: str, name: str) -> None:
    apps = kclient.AppsV1Api(client)
    dep = await apps.read_namespaced_deployment(name, ns)
    status = {"status": {"observedGeneration": dep.metadata.generation, "replicas": 1, "readyReplicas": 1,
                         "availableReplicas": 1, "updatedReplicas": 1,
                         "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                         "message": "test"}]}}
    await apps.patch_namespaced_deployment_status(name, ns, status)


async def wait_for(fn: Any, timeout: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fn()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.2)


async def test_apply_bookinfo_waits_for_available_deployments(kube_api: KubeAPIServer, kube_client: kclient.ApiClient,
                                                              tmp_path: Path) -> None:
    manifests, ns, legacy = bookinfo_copy(tmp_path, "apply")
    target = target_for(kube_api, ready_timeout=2)
    with pytest.raises(TargetError) as err:  # no controller-manager: nothing becomes Available by itself
        await asyncio.to_thread(target.apply, manifests)
    message = str(err.value)
    assert "Deployments not Available" in message
    assert all(f"{ns}/{name}" in message for name in BOOKINFO_DEPLOYMENTS - {"sleep"}), message
    assert f"{legacy}/sleep" in message
    # the objects exist, in the namespaces the manifests created first
    assert set(await asyncio.to_thread(target.deployments, ns)) == BOOKINFO_DEPLOYMENTS
    assert await asyncio.to_thread(target.deployments, legacy) == ["sleep"]
    core = kclient.CoreV1Api(kube_client)
    services = {s.metadata.name for s in (await core.list_namespaced_service(ns)).items}
    assert {"details", "ratings", "reviews", "productpage"} <= services
    ns_obj = await core.read_namespace(ns)
    assert ns_obj.metadata.labels.get("istio-injection") == "enabled"
    sa = {s.metadata.name for s in (await core.list_namespaced_service_account(ns)).items}
    assert {"bookinfo-details", "bookinfo-productpage", "sleep"} <= sa

    # a controller's part: mark every Deployment Available; apply (again, unchanged) now returns
    for namespace, names in ((ns, BOOKINFO_DEPLOYMENTS), (legacy, {"sleep"})):
        for name in names:
            await set_available(kube_client, namespace, name)
    slow = target_for(kube_api, ready_timeout=60)
    await asyncio.to_thread(slow.apply, manifests)
    assert {r.kind for r in slow.applied} >= {"Namespace", "Service", "ServiceAccount", "Deployment"}


async def test_up_requires_the_control_plane(kube_api: KubeAPIServer, tmp_path: Path) -> None:
    manifests, ns, _ = bookinfo_copy(tmp_path, "up")
    target = make_target(KubeTargetSettings(kubeconfig=kube_api.kubeconfig, control_plane_namespace="meshlet-absent",
                                            ready_timeout=1, poll_interval=0.2))
    with pytest.raises(TargetError) as err:
        await asyncio.to_thread(target.up, manifests)
    assert "meshlet control plane" in str(err.value)
    assert "meshlet-absent/meshlet-destination: not found" in str(err.value)
    assert await asyncio.to_thread(target.deployments, ns) == []  # nothing applied


async def test_pods_translates_pod_status(kube_api: KubeAPIServer, kube_client: kclient.ApiClient,
                                          kube_ns: str) -> None:
    core = kclient.CoreV1Api(kube_client)
    owner = [kclient.V1OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="reviews-v2-5d8f9c7b4",
                                      uid="0d5a3f46-0000-4000-8000-000000000001", controller=True)]
    for name, proxied in (("reviews-v2-5d8f9c7b4-x7k2p", True), ("plain", False)):
        containers = [kclient.V1Container(name="app", image="meshlet/meshlet:test")]
        if proxied:
            containers.append(kclient.V1Container(name="meshlet-proxy", image="meshlet/meshlet:test"))
        await core.create_namespaced_pod(kube_ns, kclient.V1Pod(
            metadata=kclient.V1ObjectMeta(name=name, labels={"app": "reviews", "version": "v2"} if proxied else {},
                                          owner_references=owner if proxied else None),
            spec=kclient.V1PodSpec(containers=containers)))
    ready = {"status": {"phase": "Running", "podIP": "10.244.0.17", "podIPs": [{"ip": "10.244.0.17"}],
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "containerStatuses": [{"name": n, "ready": True, "restartCount": 0, "image": "x", "imageID": "",
                                               "state": {"running": {}}} for n in ("app", "meshlet-proxy")]}}
    await core.patch_namespaced_pod_status("reviews-v2-5d8f9c7b4-x7k2p", kube_ns, ready)

    target = target_for(kube_api)
    pods = {p.name: p for p in await asyncio.to_thread(target.pods, kube_ns)}
    meshed = pods["reviews-v2-5d8f9c7b4-x7k2p"]
    assert (meshed.namespace, meshed.ip, meshed.phase, meshed.ready, meshed.meshed) == (
        kube_ns, "10.244.0.17", "Running", True, True)
    assert meshed.owner == "reviews-v2" and meshed.labels == {"app": "reviews", "version": "v2"}
    assert target.pod_address(meshed, 15090) == "10.244.0.17:15090"
    plain = pods["plain"]
    assert (plain.ip, plain.phase, plain.ready, plain.meshed, plain.owner) == ("", "Pending", False, False, "")
    with pytest.raises(TargetError, match="no IP"):
        target.pod_address(plain, 80)


async def test_exec_and_logs_fail_clearly_without_a_kubelet(kube_api: KubeAPIServer, kube_client: kclient.ApiClient,
                                                            kube_ns: str) -> None:
    core = kclient.CoreV1Api(kube_client)
    await core.create_namespaced_pod(kube_ns, kclient.V1Pod(
        metadata=kclient.V1ObjectMeta(name="sleep"),
        spec=kclient.V1PodSpec(containers=[kclient.V1Container(name="meshlet-proxy", image="meshlet/meshlet:test"),
                                           kclient.V1Container(name="sleep", image="meshlet/meshlet:test")])))
    target = target_for(kube_api)
    with pytest.raises(TargetError, match=rf"exec in {kube_ns}/sleep: .*400.*not scheduled to a node"):
        await asyncio.to_thread(target.exec, kube_ns, "sleep", ["true"])
    with pytest.raises(TargetError, match=rf"exec in {kube_ns}/missing: .*404.*pod not found"):
        await asyncio.to_thread(target.exec, kube_ns, "missing", ["true"])
    with pytest.raises(TargetError, match=rf"logs of {kube_ns}/sleep container sleep: .*not scheduled to a node"):
        await asyncio.to_thread(target.logs, kube_ns, "sleep", "sleep")
    with pytest.raises(TargetError, match=rf"logs of {kube_ns}/sleep container meshlet-proxy: .*not scheduled"):
        await asyncio.to_thread(target.logs, kube_ns, "sleep")  # every container's log, in spec order
    with pytest.raises(TargetError, match=rf"logs of {kube_ns}/missing: 404"):
        await asyncio.to_thread(target.logs, kube_ns, "missing")

    # a port-forward listener comes up, but the API server refuses the forward: the connection just closes
    forwarding = target_for(kube_api, pod_access="port-forward")
    pod = next(p for p in await asyncio.to_thread(forwarding.pods, kube_ns) if p.name == "sleep")
    try:
        host, port = (await asyncio.to_thread(forwarding.pod_address, pod, 15090)).rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 60) == b""
        writer.close()
    finally:
        await asyncio.to_thread(forwarding.down)


async def test_delete_and_down(kube_api: KubeAPIServer, kube_client: kclient.ApiClient, tmp_path: Path) -> None:
    manifests, ns, legacy = bookinfo_copy(tmp_path, "down")
    target = target_for(kube_api)
    await asyncio.to_thread(target.apply, manifests, wait=False)
    await asyncio.to_thread(target.delete, "deployment", ns, "ratings-v1")  # as the scenarios type kinds
    await asyncio.to_thread(target.delete, "svc", ns, "ratings")
    assert "ratings-v1" not in await asyncio.to_thread(target.deployments, ns)
    core = kclient.CoreV1Api(kube_client)
    assert "ratings" not in {s.metadata.name for s in (await core.list_namespaced_service(ns)).items}
    await asyncio.to_thread(target.delete, "deployment", ns, "ratings-v1")  # already gone: fine
    with pytest.raises(TargetError, match="no resource kind 'gizmo'"):
        await asyncio.to_thread(target.delete, "gizmo", ns, "x")

    await asyncio.to_thread(target.down)
    assert target.applied == []
    assert await asyncio.to_thread(target.deployments, ns) == []
    assert await asyncio.to_thread(target.deployments, legacy) == []
    assert (await core.list_namespaced_service(ns)).items == []
    # Namespaces are deleted last (they stay Terminating here: no controller-manager finishes the deletion)
    for name in (ns, legacy):
        assert (await core.read_namespace(name)).status.phase == "Terminating"
    # applying into a Namespace still being deleted waits for it to go, then says why it could not
    again = target_for(kube_api, ready_timeout=1)
    with pytest.raises(TargetError, match=rf"Namespace/{ns} is still Terminating after 1s"):
        await asyncio.to_thread(again.apply, manifests, wait=False)


async def test_bad_manifests_and_kubeconfig_are_named(kube_api: KubeAPIServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\nkind: ConfigMap\n")
    target = target_for(kube_api)
    with pytest.raises(ManifestError, match=r"bad.yaml document 2: not a Kubernetes object"):
        await asyncio.to_thread(target.apply, bad)
    unknown = tmp_path / "vs.yaml"
    unknown.write_text("apiVersion: networking.example.io/v1\nkind: Gadget\nmetadata: {name: g, namespace: default}\n")
    with pytest.raises(TargetError, match="does not serve kind Gadget in networking.example.io/v1"):
        await asyncio.to_thread(target.apply, unknown)
    nowhere = make_target(KubeTargetSettings(kubeconfig=tmp_path / "missing-kubeconfig"))
    with pytest.raises(TargetError, match="missing-kubeconfig"):
        await asyncio.to_thread(nowhere.pods, "default")
