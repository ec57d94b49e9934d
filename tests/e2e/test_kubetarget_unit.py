"""Pure parts of the Kubernetes e2e target: manifests and their order, Deployment availability,
the exec status channel, PodInfo from a Pod object, and the target switch; exec and logs
through the real client and websocket against a loopback stand-in for the API server
(the real API server has no kubelet here: tests/kube checks that it refuses clearly)."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from e2e_support import StartApp
from meshlet.e2e.kubeobjects import (
    ManifestError,
    ObjectRef,
    apply_order,
    default_container,
    delete_order,
    deployment_problem,
    exit_code,
    load_manifests,
)
from meshlet.e2e.kubetarget import KubeMeshTarget, KubeTargetSettings
from meshlet.e2e.pods import pod_from_obj
from meshlet.e2e.scenarios.harness import BOOKINFO_DIR
from meshlet.e2e.target import (
    LocalMeshTarget,
    LocalTargetSettings,
    make_target,
    target_kind,
)


def test_bookinfo_loads_and_orders_namespaces_first() -> None:
    docs = apply_order(load_manifests(BOOKINFO_DIR))
    kinds = [d["kind"] for d in docs]
    assert kinds[:2] == ["Namespace", "Namespace"]
    assert kinds.index("ServiceAccount") < kinds.index("Service") < kinds.index("Deployment")
    assert max(i for i, k in enumerate(kinds) if k == "Service") < min(i for i, k in enumerate(kinds) if k == "Deployment")
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"} == {"bookinfo", "legacy"}


def test_order_is_stable_and_custom_resources_last(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d1}\n---\n"
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: apps/v1, kind: Deployment, metadata: {name: d2}}\n"
        "- {apiVersion: v1, kind: Namespace, metadata: {name: n}}\n")
    (tmp_path / "notes.txt").write_text("not a manifest")
    names = [d["metadata"]["name"] for d in apply_order(load_manifests(tmp_path))]
    assert names == ["n", "d1", "d2", "vs"]


@pytest.mark.parametrize("text, error", [
    ("apiVersion: v1\nkind: ConfigMap\n", "document 1: not a Kubernetes object"),
    ("- a\n- b\n", "document 1: not a Kubernetes object"),
    ("key: [unclosed\n", "bad.yaml"),
])
def test_bad_manifests_name_file_and_document(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ManifestError, match=error):
        load_manifests(tmp_path / "bad.yaml")


def test_missing_manifest_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifests(tmp_path / "nope")


def test_delete_order_reverses_with_namespaces_last() -> None:
    refs = [ObjectRef("v1", "Namespace", None, "bookinfo"), ObjectRef("v1", "ServiceAccount", "bookinfo", "sa"),
            ObjectRef("v1", "Service", "bookinfo", "svc"), ObjectRef("apps/v1", "Deployment", "bookinfo", "d"),
            ObjectRef("v1", "Namespace", None, "legacy"), ObjectRef("x.io/v1", "Gadget", "bookinfo", "g")]
    assert [r.name for r in delete_order(refs)] == ["g", "d", "svc", "sa", "legacy", "bookinfo"]


def _deployment(replicas: int = 2, generation: int = 3, observed: int = 3, available: int = 2,
                cond: str | None = "True") -> dict:
    status: dict = {"observedGeneration": observed, "availableReplicas": available}
    if cond:
        status["conditions"] = [{"type": "Available", "status": cond, "reason": "MinimumReplicasUnavailable",
                                 "message": "Deployment does not have minimum availability."}]
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas}, "status": status}


def test_deployment_availability() -> None:
    assert deployment_problem(_deployment()) is None
    assert deployment_problem(_deployment(observed=2)) == "its controller has not observed the latest spec"
    assert deployment_problem(_deployment(available=1, cond="False")) == (
        "1/2 available (MinimumReplicasUnavailable: Deployment does not have minimum availability.)")
    assert deployment_problem(_deployment(cond=None)) == "2/2 available"
    assert deployment_problem(_deployment(replicas=0, available=0, cond=None)) is None
    assert deployment_problem({"metadata": {"generation": 1}, "spec": {}}) is not None


def test_exec_status_channel() -> None:
    assert exit_code(json.dumps({"metadata": {}, "status": "Success"})) == (0, "")
    failed = {"status": "Failure", "message": "command terminated with non-zero exit code: exit status 7",
              "reason": "NonZeroExitCode",
              "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}}
    assert exit_code(json.dumps(failed)) == (7, "")
    not_found = {"status": "Failure", "message": 'exec: "curl": executable file not found in $PATH'}
    assert exit_code(json.dumps(not_found)) == (126, 'exec: "curl": executable file not found in $PATH')
    assert exit_code("garbage")[0] == 126


def test_default_container_skips_the_proxy() -> None:
    pod = {"spec": {"containers": [{"name": "meshlet-proxy"}, {"name": "sleep"}, {"name": "other"}]}}
    assert default_container(pod) == "sleep"
    pod["metadata"] = {"annotations": {"kubectl.kubernetes.io/default-container": "other"}}
    assert default_container(pod) == "other"
    assert default_container({"spec": {"containers": [{"name": "meshlet-proxy"}]}}) == "meshlet-proxy"
    assert default_container({}) == ""


def test_pod_info_from_a_kube_pod_object() -> None:
    pod = {"metadata": {"name": "productpage-v1-6b746f74dc-9stvs", "namespace": "bookinfo",
                        "labels": {"app": "productpage", "version": "v1", "pod-template-hash": "6b746f74dc"},
                        "ownerReferences": [{"kind": "ReplicaSet", "name": "productpage-v1-6b746f74dc"}]},
           "spec": {"initContainers": [{"name": "meshlet-init"}],
                    "containers": [{"name": "productpage"}, {"name": "meshlet-proxy"}]},
           "status": {"phase": "Running", "podIP": "10.244.0.9",
                      "conditions": [{"type": "Ready", "status": "True"}]}}
    info = pod_from_obj(pod)
    assert (info.key, info.ip, info.phase, info.ready, info.meshed, info.owner) == (
        "bookinfo/productpage-v1-6b746f74dc-9stvs", "10.244.0.9", "Running", True, True, "productpage-v1")


def test_target_switch() -> None:
    assert target_kind({}) == "local"
    assert target_kind({"MESHLET_E2E_TARGET": " Kube "}) == "kube"
    with pytest.raises(ValueError, match="MESHLET_E2E_TARGET='kind': expected one of local, kube"):
        target_kind({"MESHLET_E2E_TARGET": "kind"})
    assert isinstance(make_target(LocalTargetSettings(state_dir=Path("/tmp/x"))), LocalMeshTarget)
    kube = make_target(KubeTargetSettings(kubeconfig=Path("/tmp/kc")))
    assert isinstance(kube, KubeMeshTarget)
    with pytest.raises(TypeError):
        make_target("local")  # type: ignore[arg-type]


def test_kube_settings_from_env() -> None:
    s = KubeTargetSettings.from_env({"KUBECONFIG": "/a/kc:/b/kc", "MESHLET_E2E_CP_NAMESPACE": "mesh"})
    assert (s.kubeconfig, s.context, s.control_plane_namespace) == (Path("/a/kc"), None, "mesh")
    s = KubeTargetSettings.from_env({"KUBECONFIG": "/a/kc", "MESHLET_E2E_KUBECONFIG": "/e2e/kc",
                                     "MESHLET_E2E_KUBE_CONTEXT": "kind-kind"})
    assert (s.kubeconfig, s.context, s.control_plane_namespace) == (Path("/e2e/kc"), "kind-kind", "meshlet")
    assert KubeTargetSettings.from_env({}).kubeconfig is None
    assert KubeTargetSettings.from_env({"MESHLET_E2E_KUBE_READY_TIMEOUT": "5"}).ready_timeout == 5.0
    with pytest.raises(ValueError, match="MESHLET_E2E_KUBE_READY_TIMEOUT='soon'"):
        KubeTargetSettings.from_env({"MESHLET_E2E_KUBE_READY_TIMEOUT": "soon"})


def test_local_only_passes_a_local_target_through() -> None:
    from meshlet.e2e.scenarios.harness import local_only
    local = LocalMeshTarget(LocalTargetSettings(state_dir=Path("/tmp/x")))
    assert local_only(local, "why") is local
    with pytest.raises(pytest.skip.Exception, match="not applicable on the kube target: needs a state dir"):
        local_only(make_target(KubeTargetSettings()), "needs a state dir")


def test_make_e2e_kube_runs_the_scenarios_on_the_kube_target_after_the_checks() -> None:
    import subprocess
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(["make", "-n", "-C", str(root), "e2e-kube", "PYTHON=python3", "CP_NAMESPACE=mesh"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    checks = proc.stdout.find("meshlet check --proxy -n bookinfo -L mesh")
    scenarios = proc.stdout.find("MESHLET_E2E_CP_NAMESPACE=mesh python3 -m pytest e2e/scenarios --mesh-target=kube")
    assert 0 <= checks < scenarios, proc.stdout


# --- exec and logs over real sockets against a stand-in API server (no kubelet here can run a command) ---
def _fake_api_server() -> tuple[web.Application, list[dict]]:
    seen: list[dict] = []
    pod = {"metadata": {"name": "sleep-1", "namespace": "ns"},
           "spec": {"containers": [{"name": "meshlet-proxy"}, {"name": "sleep"}]}}

    async def get_pod(request: web.Request) -> web.Response:
        return web.json_response(pod)

    async def exec_(request: web.Request) -> web.WebSocketResponse:
        command = request.query.getall("command")
        seen.append({"container": request.query.get("container"), "command": command,
                     "auth": request.headers.get("Authorization")})
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await ws.prepare(request)
        await ws.send_bytes(b"\x01" + b"hello from " + command[-1].encode() + b"\n")
        await ws.send_bytes(b"\x02" + b"a warning\n")
        if command[-1] == "fail":
            status = {"status": "Failure", "reason": "NonZeroExitCode", "message": "exit status 7",
                      "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}}
        else:
            status = {"metadata": {}, "status": "Success"}
        await ws.send_bytes(b"\x03" + json.dumps(status).encode())
        await ws.close()
        return ws

    async def log(request: web.Request) -> web.Response:
        return web.Response(text=f"log of {request.query['container']}\n")

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/pods/sleep-1", get_pod)
    app.router.add_get("/api/v1/namespaces/ns/pods/sleep-1/exec", exec_)
    app.router.add_get("/api/v1/namespaces/ns/pods/sleep-1/log", log)
    return app, seen


async def test_exec_and_logs_through_the_websocket_protocol(start_app: StartApp, tmp_path: Path) -> None:
    app, seen = _fake_api_server()
    url = await start_app(app)
    target = KubeMeshTarget(KubeTargetSettings(kubeconfig=_kubeconfig(tmp_path, url)))
    ok = await asyncio.to_thread(target.exec, "ns", "sleep-1", ["sh", "-c", "ok"])
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "hello from ok\n", "a warning\n")
    failed = await asyncio.to_thread(target.exec, "ns", "sleep-1", ["sh", "-c", "fail"])
    assert (failed.returncode, failed.stdout) == (7, "hello from fail\n")
    assert seen[0] == {"container": "sleep", "command": ["sh", "-c", "ok"], "auth": "Bearer secret-token"}
    logs = await asyncio.to_thread(target.logs, "ns", "sleep-1")
    assert logs == "log of meshlet-proxy\nlog of sleep\n"
    assert await asyncio.to_thread(target.logs, "ns", "sleep-1", "sleep") == "log of sleep\n"


def _kubeconfig(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]}))
    return path


async def test_port_forward_through_the_websocket_protocol(start_app: StartApp, tmp_path: Path) -> None:
    """pod_address with pod_access=port-forward: a loopback port whose bytes travel as portforward channel frames."""
    seen: list[str] = []

    async def portforward(request: web.Request) -> web.WebSocketResponse:
        port = int(request.query["ports"])
        seen.append(f"{request.match_info['pod']}:{port}")
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await ws.prepare(request)
        await ws.send_bytes(b"\x00" + port.to_bytes(2, "little"))
        await ws.send_bytes(b"\x01" + port.to_bytes(2, "little"))
        async for msg in ws:  # an upper-casing echo "pod"
            if msg.type == web.WSMsgType.BINARY and msg.data[:1] == b"\x00":
                await ws.send_bytes(b"\x00" + msg.data[1:].upper())
        return ws

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/pods/{pod}/portforward", portforward)
    url = await start_app(app)
    target = KubeMeshTarget(KubeTargetSettings(kubeconfig=_kubeconfig(tmp_path, url), pod_access="port-forward"))
    pod = pod_from_obj({"metadata": {"name": "httpbin-1", "namespace": "ns"}})
    try:
        address = await asyncio.to_thread(target.pod_address, pod, 8000)
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1"
        for word in (b"hello", b"again"):  # two connections through the same listener
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(word)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(len(word)), 30) == word.upper()
            writer.close()
        assert await asyncio.to_thread(target.pod_address, pod, 8000) == address
    finally:
        await asyncio.to_thread(target.down)
    assert seen[:2] == ["httpbin-1:8000", "httpbin-1:8000"]
    with pytest.raises(ValueError, match="pod access 'tunnel'"):
        KubeTargetSettings(pod_access="tunnel")
