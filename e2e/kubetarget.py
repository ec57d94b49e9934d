"""`MeshTarget` over the Kubernetes API: the e2e scenarios against a cluster.

`KubeMeshTarget` talks to the API server with kubernetes_asyncio (no kubectl):
manifests are server-side applied (Namespaces and other dependencies first,
resource paths found by API discovery), Deployments are awaited until
Available, pods are listed as `PodInfo`, `exec` uses the pods/exec websocket
(exit code from the status channel), `logs` the pods/log subresource. The
protocol is synchronous: each call runs on its own event loop with a fresh
client (call it from a worker thread inside async code).

`pod_address` returns the pod IP by default (the test host must route to the
pod network: in the cluster, or e.g. `ip route add <pod CIDR> via <kind node
IP>`); with `pod_access="port-forward"` (MESHLET_E2E_KUBE_POD_ACCESS) it is a
loopback port forwarded through the API server (meshlet.e2e.kubeforward).

The pure parts (manifests, their order, availability, the exec status
channel) are in meshlet.e2e.kubeobjects.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.stream import WsApiClient
from meshlet.controller.store.kube.transport import (
    APPLY_PATCH,
    ApiError,
    Transport,
    TransportError,
)
from meshlet.e2e.kubeforward import PortForwarder
from meshlet.e2e.kubeobjects import (
    STATUS,
    STDERR,
    STDOUT,
    ManifestError,
    ObjectRef,
    apply_order,
    default_container,
    delete_order,
    deployment_problem,
    exit_code,
    load_manifests,
)
from meshlet.e2e.pods import PodInfo, pod_from_obj
from meshlet.e2e.target import TargetError

__all__ = ["KubeMeshTarget", "KubeTargetSettings", "ManifestError"]

T = TypeVar("T")
CONTROL_PLANE = ("meshlet-destination", "meshlet-identity", "meshlet-injector")
POD_ACCESS = ("ip", "port-forward")


@dataclass(frozen=True)
class KubeTargetSettings:
    kubeconfig: Path | None = None
    """None: $KUBECONFIG or ~/.kube/config, as kubectl."""
    context: str | None = None
    control_plane_namespace: str = "meshlet"
    control_plane: tuple[str, ...] = CONTROL_PLANE
    """Deployments `up` requires Available in the control-plane namespace (empty: no check)."""
    field_manager: str = "meshlet-e2e"
    request_timeout: float = 30.0
    ready_timeout: float = 300.0
    """How long `up`/`apply` wait for Deployments to become Available."""
    poll_interval: float = 1.0
    pod_access: str = "ip"
    """How `pod_address` reaches pods: `ip` (the host routes to pod IPs) or `port-forward` (through the API server)."""

    def __post_init__(self) -> None:
        if self.pod_access not in POD_ACCESS:
            raise ValueError(f"pod access {self.pod_access!r}: expected one of {', '.join(POD_ACCESS)}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KubeTargetSettings:
        """MESHLET_E2E_KUBECONFIG (else KUBECONFIG's first file), MESHLET_E2E_KUBE_CONTEXT,
        MESHLET_E2E_CP_NAMESPACE, MESHLET_E2E_KUBE_READY_TIMEOUT (seconds), MESHLET_E2E_KUBE_POD_ACCESS."""
        env = os.environ if env is None else env
        path = env.get("MESHLET_E2E_KUBECONFIG") or (env.get("KUBECONFIG") or "").split(os.pathsep)[0]
        timeout = env.get("MESHLET_E2E_KUBE_READY_TIMEOUT") or "300"
        try:
            ready_timeout = float(timeout)
        except ValueError:
            raise ValueError(f"MESHLET_E2E_KUBE_READY_TIMEOUT={timeout!r}: expected seconds") from None
        return cls(kubeconfig=Path(path) if path else None, context=env.get("MESHLET_E2E_KUBE_CONTEXT") or None,
                   control_plane_namespace=env.get("MESHLET_E2E_CP_NAMESPACE") or "meshlet",
                   ready_timeout=ready_timeout, pod_access=env.get("MESHLET_E2E_KUBE_POD_ACCESS") or "ip")

class KubeMeshTarget:
    """`MeshTarget` against the cluster a kubeconfig names."""

    def __init__(self, settings: KubeTargetSettings) -> None:
        self.settings = settings
        self.applied: list[ObjectRef] = []
        self._discovery: dict[str, list[dict[str, Any]]] = {}
        self._forwarder: PortForwarder | None = None

    def __repr__(self) -> str:
        return f"<KubeMeshTarget kubeconfig={self.settings.kubeconfig} context={self.settings.context}>"

    # --- the event loop and client per call -------------------------------------------------------
    async def _config(self) -> kclient.Configuration:
        conf = kclient.Configuration()
        try:
            await kconfig.load_kube_config(config_file=str(self.settings.kubeconfig) if self.settings.kubeconfig
                                           else None, context=self.settings.context, client_configuration=conf)
        except (kconfig.ConfigException, OSError, ValueError) as exc:
            raise TargetError(f"kubeconfig {self.settings.kubeconfig or '(default)'}: {exc}") from None
        return conf

    def _run(self, fn: Callable[[Transport, kclient.Configuration], Awaitable[T]]) -> T:
        async def main() -> T:
            conf = await self._config()
            transport = Transport(kclient.ApiClient(configuration=conf), self.settings.request_timeout)
            try:
                return await fn(transport, conf)
            finally:
                await transport.close()
        return asyncio.run(main())

    async def _call(self, t: Transport, method: str, path: str, what: str, **kw: Any) -> Any:
        try:
            return await t.request(method, path, **kw)
        except TransportError as exc:
            raise TargetError(f"{what}: {exc}") from None

    async def _resources(self, t: Transport, api_version: str) -> list[dict[str, Any]]:
        if api_version not in self._discovery:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            try:
                found = await t.request("GET", path)
            except ApiError as exc:
                if exc.status != 404:
                    raise TargetError(f"discovery of {api_version}: {exc}") from None
                found = {}
            except TransportError as exc:
                raise TargetError(f"discovery of {api_version}: {exc}") from None
            resources = [r for r in found.get("resources", []) if "/" not in r["name"]]
            if not resources:  # not served (yet): ask again next time, a CRD may be installed meanwhile
                return []
            self._discovery[api_version] = resources
        return self._discovery[api_version]

    def _path(self, api_version: str, res: Mapping[str, Any], namespace: str | None, name: str | None) -> str:
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if res.get("namespaced"):
            base += f"/namespaces/{namespace or 'default'}"
        return f"{base}/{res['name']}" + (f"/{name}" if name else "")

    async def _resolve(self, t: Transport, api_version: str, kind: str) -> dict[str, Any]:
        for res in await self._resources(t, api_version):
            if res["kind"] == kind:
                return res
        raise TargetError(f"the API server does not serve kind {kind} in {api_version} (CRDs not installed?)")

    async def _find_kind(self, t: Transport, kind: str) -> tuple[str, dict[str, Any]]:
        """(apiVersion, resource) for a kind as users type it: `deployment`, `deploy`, `virtualservices`."""
        want = kind.lower()
        versions = ["v1", "apps/v1"]
        groups = await self._call(t, "GET", "/apis", "API group discovery")
        versions += [g["preferredVersion"]["groupVersion"] for g in groups.get("groups", [])]
        for api_version in dict.fromkeys(versions):
            for res in await self._resources(t, api_version):
                if want in (res["kind"].lower(), res["name"], res.get("singularName"), *(res.get("shortNames") or [])):
                    return api_version, res
        raise TargetError(f"no resource kind {kind!r} is served by the API server")

    # --- MeshTarget ------------------------------------------------------------------------------
    def up(self, manifests: Path, *, wait: bool = True) -> None:
        """Check the control plane is Available, then apply `manifests`."""
        if self.settings.control_plane:
            self._run(lambda t, _: self._wait_deployments(t, [
                ObjectRef("apps/v1", "Deployment", self.settings.control_plane_namespace, name)
                for name in self.settings.control_plane], what="the meshlet control plane (run `make install`)"))
        self.apply(manifests, wait=wait)

    def apply(self, manifests: Path, *, wait: bool = True) -> None:
        docs = apply_order(load_manifests(manifests))

        async def run(t: Transport, _: kclient.Configuration) -> None:
            refs = [await self._apply_one(t, doc) for doc in docs]
            if wait:
                await self._wait_deployments(t, [r for r in refs if r.kind == "Deployment"], what=str(manifests))
        self._run(run)

    async def _apply_one(self, t: Transport, doc: Mapping[str, Any]) -> ObjectRef:
        api_version, kind, name = str(doc["apiVersion"]), str(doc["kind"]), str(doc["metadata"]["name"])
        res = await self._resolve(t, api_version, kind)
        ns = str(doc["metadata"].get("namespace") or "default") if res.get("namespaced") else None
        body = json.loads(json.dumps(doc))
        if ns:
            body["metadata"]["namespace"] = ns
        ref = ObjectRef(api_version, kind, ns, name)
        if kind == "Namespace" and api_version == "v1":
            await self._wait_not_terminating(t, name)
        await self._call(t, "PATCH", self._path(api_version, res, ns, name), f"apply {ref}", body=body,
                         content_type=APPLY_PATCH, query={"fieldManager": self.settings.field_manager, "force": "true"})
        if ref not in self.applied:
            self.applied.append(ref)
        return ref

    async def _wait_not_terminating(self, t: Transport, name: str) -> None:
        """A Namespace being deleted (an earlier `down`) cannot take new objects: wait until it is gone."""
        deadline = time.monotonic() + self.settings.ready_timeout
        while True:
            try:
                phase = ((await t.request("GET", f"/api/v1/namespaces/{name}")).get("status") or {}).get("phase")
            except ApiError as exc:
                if exc.status == 404:
                    return
                raise TargetError(f"read Namespace/{name}: {exc}") from None
            except TransportError as exc:
                raise TargetError(f"read Namespace/{name}: {exc}") from None
            if phase != "Terminating":
                return
            if time.monotonic() >= deadline:
                raise TargetError(f"Namespace/{name} is still Terminating after {self.settings.ready_timeout}s "
                                  "(an earlier deletion has not finished)")
            await asyncio.sleep(self.settings.poll_interval)

    async def _wait_deployments(self, t: Transport, refs: Sequence[ObjectRef], *, what: str) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout
        while True:
            problems = []
            for ref in refs:
                path = f"/apis/apps/v1/namespaces/{ref.namespace}/deployments/{ref.name}"
                try:
                    problem = deployment_problem(await t.request("GET", path))
                except ApiError as exc:
                    problem = "not found" if exc.status == 404 else str(exc)
                except TransportError as exc:
                    problem = str(exc)
                if problem:
                    problems.append(f"{ref.namespace}/{ref.name}: {problem}")
            if not problems:
                return
            if time.monotonic() >= deadline:
                raise TargetError(f"{what}: Deployments not Available after {self.settings.ready_timeout}s: "
                                  + "; ".join(problems))
            await asyncio.sleep(self.settings.poll_interval)

    def down(self) -> None:
        """Delete what `up`/`apply` applied through this target, Namespaces last; stop port-forwards."""
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        refs = delete_order(self.applied)

        async def run(t: Transport, _: kclient.Configuration) -> None:
            for ref in refs:
                res = await self._resolve(t, ref.api_version, ref.kind)
                await self._delete(t, self._path(ref.api_version, res, ref.namespace, ref.name), str(ref))
        self._run(run)
        self.applied = [r for r in self.applied if r not in refs]

    async def _delete(self, t: Transport, path: str, what: str) -> None:
        try:
            await t.request("DELETE", path, query={"propagationPolicy": "Background"})
        except ApiError as exc:
            if exc.status != 404:
                raise TargetError(f"delete {what}: {exc}") from None
        except TransportError as exc:
            raise TargetError(f"delete {what}: {exc}") from None

    def delete(self, kind: str, namespace: str, name: str) -> None:
        async def run(t: Transport, _: kclient.Configuration) -> None:
            api_version, res = await self._find_kind(t, kind)
            await self._delete(t, self._path(api_version, res, namespace, name), f"{kind}/{name} in {namespace}")
            self.applied = [r for r in self.applied if not (r.kind == res["kind"] and r.name == name and
                                                            r.namespace == (namespace if res.get("namespaced") else None))]
        self._run(run)

    def pods(self, namespace: str) -> list[PodInfo]:
        async def run(t: Transport, _: kclient.Configuration) -> list[PodInfo]:
            listing = await self._call(t, "GET", f"/api/v1/namespaces/{namespace}/pods", f"list pods in {namespace}")
            return [pod_from_obj(item) for item in listing.get("items", [])]
        return self._run(run)

    def deployments(self, namespace: str) -> list[str]:
        async def run(t: Transport, _: kclient.Configuration) -> list[str]:
            listing = await self._call(t, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments",
                                       f"list deployments in {namespace}")
            return [str(i["metadata"]["name"]) for i in listing.get("items", [])]
        return self._run(run)

    def exec(self, namespace: str, pod: str, argv: Sequence[str],
             timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        async def run(t: Transport, conf: kclient.Configuration) -> subprocess.CompletedProcess[str]:
            try:
                return await asyncio.wait_for(self._exec(t, conf, namespace, pod, argv), timeout)
            except TimeoutError:
                raise TargetError(f"exec in {namespace}/{pod} `{' '.join(argv)}` did not finish in {timeout}s") from None
        return self._run(run)

    async def _exec(self, t: Transport, conf: kclient.Configuration, namespace: str, pod: str,
                    argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        out = {STDOUT: bytearray(), STDERR: bytearray(), STATUS: bytearray()}
        container = await self._container(t, namespace, pod)
        ws_api = WsApiClient(configuration=conf)
        try:
            ctx = await kclient.CoreV1Api(ws_api).connect_get_namespaced_pod_exec(
                pod, namespace, command=list(argv), stdout=True, stderr=True, stdin=False, tty=False,
                _preload_content=False, **({"container": container} if container else {}))
            async with ctx as ws:
                async for msg in ws:
                    data = msg.data.encode() if isinstance(msg.data, str) else msg.data
                    if isinstance(data, (bytes, bytearray)) and data and data[0] in out:
                        out[data[0]] += data[1:]
        except aiohttp.WSServerHandshakeError as exc:
            raise TargetError(f"exec in {namespace}/{pod}: the API server refused ({exc.status} {exc.message})"
                              + await self._why_not_running(t, namespace, pod)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TargetError(f"exec in {namespace}/{pod}: {exc or type(exc).__name__}") from None
        finally:
            await ws_api.close()
        if not out[STATUS]:
            raise TargetError(f"exec in {namespace}/{pod}: the stream ended without an exit status")
        code, error = exit_code(out[STATUS].decode(errors="replace"))
        stderr = out[STDERR].decode(errors="replace") + (f"\n{error}" if error else "")
        return subprocess.CompletedProcess(list(argv), code, out[STDOUT].decode(errors="replace"), stderr)

    async def _container(self, t: Transport, namespace: str, pod: str) -> str:
        """The default container, or "" when the pod cannot be read (the exec itself then says why)."""
        try:
            return default_container(await t.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}"))
        except TransportError:
            return ""

    async def _why_not_running(self, t: Transport, namespace: str, pod: str) -> str:
        try:
            obj = await t.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}")
        except ApiError as exc:
            return ": pod not found" if exc.status == 404 else ""
        except TransportError:
            return ""
        if not (obj.get("spec") or {}).get("nodeName"):
            return ": the pod is not scheduled to a node"
        return f": pod phase {(obj.get('status') or {}).get('phase') or 'unknown'}"

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        """One container's log, or every container's (proxy included, like `kubectl logs --all-containers`)."""
        async def run(t: Transport, _: kclient.Configuration) -> str:
            if container:
                return await self._log(t, namespace, pod, container)
            obj = await self._call(t, "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}", f"logs of {namespace}/{pod}")
            names = [str(c["name"]) for c in (obj.get("spec") or {}).get("containers") or []]
            return "".join([await self._log(t, namespace, pod, name) for name in names])
        return self._run(run)

    async def _log(self, t: Transport, namespace: str, pod: str, container: str) -> str:
        query = [("container", container)]
        what = f"logs of {namespace}/{pod} container {container}"
        try:
            resp = await t.api.call_api(f"/api/v1/namespaces/{namespace}/pods/{pod}/log", "GET",
                                        query_params=query, auth_settings=["BearerToken"],
                                        _preload_content=False, _request_timeout=self.settings.request_timeout)
            body = (await resp.read()).decode(errors="replace")
            resp.release()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TargetError(f"{what}: {exc or type(exc).__name__}") from None
        if resp.status == 204:  # the API server has no kubelet location: the pod is not on a node
            raise TargetError(f"{what}: no log stream" + await self._why_not_running(t, namespace, pod))
        if resp.status != 200:
            try:
                message = json.loads(body).get("message") or body
            except ValueError:
                message = body
            raise TargetError(f"{what}: {resp.status} {message[:300]}")
        return body

    def pod_address(self, pod: PodInfo, port: int) -> str:
        if self.settings.pod_access == "port-forward":
            if self._forwarder is None:
                self._forwarder = PortForwarder(self._config, self.settings.request_timeout)
            return self._forwarder.address(pod.namespace, pod.name, port)
        if not pod.ip:
            raise TargetError(f"pod {pod.key} has no IP yet")
        return f"{pod.ip}:{port}"
