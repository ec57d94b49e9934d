"""The local runtime: turns Deployments and Services in the store into running pods.

Level-triggered: any store change (or a pod's status change, or a periodic
resync) marks the state dirty and one `reconcile` pass compares the whole
desired state with the running pods:

* Deployments → `replicas` pods each (`<deploy>-<5 chars>`); pods of an older
  template (or a changed injection decision) are replaced once the new ones
  are ready; scale down stops the least ready/newest first.
* Services → every pod's hosts file (VIP names) and `MESHLET_SERVICES` DNAT
  chain (ready endpoints).
* Pods are written back as `Pod` resources (status current), each with its
  `WorkloadToken`; Deployments get their status.

One pod failing never stops the others: each pod runs in its own task and
a failing reconcile step is logged and retried on the next pass.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog
from meshlet.controller.local import dnat, netns
from meshlet.controller.local.hosts import ServiceName, render_hosts, render_resolv_conf
from meshlet.controller.local.ipam import IpamError, IpamFile
from meshlet.controller.local.pod import LocalPod, RuntimeSettings, pod_dir
from meshlet.controller.local.proxyconfig import (
    DEFAULT_SETTINGS,
    ROOT_NAMESPACE,
    ProxyConfigRule,
    ProxySettings,
    effective,
)
from meshlet.controller.local.resources import (
    deployment_status,
    pod_resource,
    workload_token,
)
from meshlet.controller.local.spec import DeploymentSpec, ServiceSpec, SpecError
from meshlet.controller.model import DeploymentStatus, to_obj
from meshlet.controller.store.base import Store
from meshlet.controller.store.errors import StoreError
from meshlet.injector.decide import InjectionError, decide
from meshlet.proxy.init.iptables import CaptureConfig, nat_table

POD_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"
RESYNC_SECONDS = 5.0
STOP_CONCURRENCY = 8
FAILED_POD_GRACE = 5.0
"""A pod whose start failed (netns/iptables error) is replaced after this many seconds."""
WATCHED_KINDS = {"Namespace", "Deployment", "Service", "ProxyConfig", "MeshConfig"}
"""Pods the user deletes from the store are noticed on the periodic resync."""


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(POD_SUFFIX_CHARS) for _ in range(n))


@dataclass(frozen=True)
class Owner:
    deployment: tuple[str, str]
    template_hash: str
    meshed: bool
    proxy: ProxySettings = DEFAULT_SETTINGS
    """The proxy settings the pod was started with (ProxyConfig); a change replaces the pod."""


def _target_port(pod: LocalPod, target: int | str) -> int | None:
    if isinstance(target, int):
        return target
    if str(target).isdigit():
        return int(target)
    for c in pod.deploy.containers:
        for p in c.ports:
            if p.name == target:
                return p.port
    return None


def service_rules(services: Iterable[ServiceSpec], pods: Iterable[LocalPod]) -> list[dnat.ServicePortRule]:
    """DNAT rules of every Service port towards its ready endpoints (pure over pod state)."""
    pods = list(pods)
    rules: list[dnat.ServicePortRule] = []
    for svc in services:
        if svc.cluster_ip is None:
            continue
        members = [p for p in pods if p.state.ready and svc.selects(p.namespace, p.deploy.labels)]
        for sp in svc.ports:
            eps = []
            for p in members:
                port = _target_port(p, sp.target_port)
                if port is not None:
                    eps.append(dnat.Endpoint(p.ip, port))
            rules.append(dnat.ServicePortRule(svc.cluster_ip, sp.port, sp.protocol, tuple(eps),
                                              comment=f"{svc.namespace}/{svc.name}:{sp.port}"))
    return rules


class Runtime:
    def __init__(self, settings: RuntimeSettings, store: Store, *, log: structlog.stdlib.BoundLogger,
                 pod_factory: Callable[..., LocalPod] = LocalPod) -> None:
        self.settings = settings
        self.pod_factory = pod_factory
        """Builds the pods (tests pass a fake that runs nothing)."""
        self.cfg = settings.local
        self.store = store
        self.log = log
        self.ipam = IpamFile(self.cfg.state_dir / "ipam.json", self.cfg.pod_cidr)
        self.pods: dict[tuple[str, str], LocalPod] = {}
        self.owners: dict[tuple[str, str], Owner] = {}
        self.written: dict[tuple[str, str], object] = {}
        self.deploy_status_written: dict[tuple[str, str], object] = {}
        self.services: list[ServiceSpec] = []
        self.rules: list[dnat.ServicePortRule] = []
        self.proxy_rules: list[ProxyConfigRule] = []
        self.root_namespace = ROOT_NAMESPACE
        self.mesh_default_concurrency: int | None = None
        self._proxy_problems: dict[tuple[str, str], str] = {}
        self._dirty = asyncio.Event()

    def mark_dirty(self) -> None:
        self._dirty.set()

    # --- main loop -------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        await self.startup_cleanup()
        watcher = asyncio.create_task(self._watch(), name="runtime-watch")
        if ready is not None:
            ready.set()
        try:
            self._dirty.set()
            while True:
                try:
                    await asyncio.wait_for(self._dirty.wait(), RESYNC_SECONDS)
                except TimeoutError:
                    pass
                self._dirty.clear()
                try:
                    await self.reconcile()
                except (StoreError, OSError, netns.NetnsError, IpamError) as e:
                    self.log.error("reconcile.failed", error=str(e))
                    await asyncio.sleep(1)
                except Exception:  # a bug must not take every pod down with the daemon
                    self.log.exception("reconcile.crashed")
                    await asyncio.sleep(1)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await asyncio.shield(self.shutdown())

    async def _watch(self) -> None:
        while True:
            try:
                async for _ in self.store.watch(WATCHED_KINDS):
                    self._dirty.set()
            except asyncio.CancelledError:
                raise
            except StoreError as e:
                self.log.warning("watch.restart", error=str(e))
            except Exception:  # the periodic resync still runs; log and watch again
                self.log.exception("watch.crashed")
            await asyncio.sleep(1)

    async def startup_cleanup(self) -> None:
        """Forget pods of a previous run: their processes died with it (or are killed here)."""
        removed = await netns.cleanup_all(self.cfg.netns_prefix, bridge=None)
        if removed:
            self.log.info("startup.cleaned", removed=removed)
        for kind in ("Pod", "WorkloadToken"):
            objs, _ = await self.store.list(kind)
            for obj in objs:
                await self.store.delete(kind, obj.namespace, obj.name)
        for key in self.ipam.allocated():
            self.ipam.release(key)
        deps, _ = await self.store.list("Deployment")
        for d in deps:  # statuses of the previous run describe pods that are gone
            await self.store.update_status(d.with_status(DeploymentStatus()))
        await netns.ensure_bridge(self.cfg.bridge, self.cfg.gateway_ip, self.cfg.pod_cidr)

    async def shutdown(self) -> None:
        await self.stop_pods(list(self.pods))

    async def stop_pods(self, keys: Iterable[tuple[str, str]]) -> None:
        """Stop several pods concurrently (each stop waits for its processes to exit)."""
        sem = asyncio.Semaphore(STOP_CONCURRENCY)

        async def one(key: tuple[str, str]) -> None:
            async with sem:
                await self.stop_pod(key)

        keys = list(keys)
        results = await asyncio.gather(*(one(k) for k in keys), return_exceptions=True)
        for key, result in zip(keys, results):
            if isinstance(result, Exception):
                self.log.error("pod.stop_failed", pod=f"{key[0]}/{key[1]}", error=str(result))

    # --- reconcile -------------------------------------------------------

    async def reconcile(self) -> None:
        ns_objs, _ = await self.store.list("Namespace")
        ns_labels = {o.name: dict(o.metadata.labels) for o in ns_objs}
        dep_objs, _ = await self.store.list("Deployment")
        svc_objs, _ = await self.store.list("Service")
        self.services = []
        for o in svc_objs:
            try:
                self.services.append(ServiceSpec.from_obj(to_obj(o)))
            except SpecError as e:
                self.log.error("service.invalid", error=str(e))
        wanted: dict[tuple[str, str], DeploymentSpec] = {}
        generations: dict[tuple[str, str], int] = {}
        for o in dep_objs:
            try:
                spec = DeploymentSpec.from_obj(to_obj(o))
            except SpecError as e:
                self.log.error("deployment.invalid", error=str(e))
                continue
            wanted[spec.key] = spec
            generations[spec.key] = o.metadata.generation

        await self._load_proxy_configs()
        await self._forget_pods_deleted_from_store()
        await self.stop_pods([k for k, o in self.owners.items() if o.deployment not in wanted])
        for spec in wanted.values():
            try:
                await self._reconcile_deployment(spec, ns_labels.get(spec.namespace, {}))
            except (InjectionError, IpamError, StoreError, OSError) as e:
                self.log.error("deployment.reconcile_failed", deployment=f"{spec.namespace}/{spec.name}", error=str(e))

        self.rules = service_rules(self.services, self.pods.values())
        for pod in list(self.pods.values()):
            try:
                await pod.refresh_network()
            except (netns.NetnsError, OSError) as e:
                self.log.error("pod.network_update_failed", pod=f"{pod.namespace}/{pod.name}", error=str(e))
        await self._write_statuses(wanted, generations)

    async def _load_proxy_configs(self) -> None:
        pcs, _ = await self.store.list("ProxyConfig")
        self.proxy_rules = [ProxyConfigRule.from_resource(o) for o in pcs]
        meshes, _ = await self.store.list("MeshConfig")
        spec = meshes[0].spec if meshes else None
        self.root_namespace = spec.root_namespace if spec is not None else ROOT_NAMESPACE
        default = spec.default_config if spec is not None else None
        self.mesh_default_concurrency = default.concurrency if default is not None else None

    def proxy_settings(self, spec: DeploymentSpec) -> ProxySettings:
        """The deployment's proxy settings (ProxyConfig precedence); a bad annotation is logged once."""
        settings, problem = effective(spec.namespace, spec.labels, spec.annotations, self.proxy_rules,
                                      root_namespace=self.root_namespace,
                                      mesh_default=self.mesh_default_concurrency)
        if problem and self._proxy_problems.get(spec.key) != problem:
            self.log.warning("deployment.proxy_config_invalid", deployment=f"{spec.namespace}/{spec.name}",
                             error=problem)
        self._proxy_problems[spec.key] = problem
        return settings

    async def _reconcile_deployment(self, spec: DeploymentSpec, namespace_labels: dict[str, str]) -> None:
        meshed = decide(namespace_labels, spec.labels, spec.annotations).inject
        proxy = self.proxy_settings(spec) if meshed else DEFAULT_SETTINGS
        now = asyncio.get_running_loop().time()
        failed = [k for k, o in self.owners.items() if o.deployment == spec.key
                  and (t := self.pods[k].failed_at) is not None and now - t >= FAILED_POD_GRACE]
        for key in failed:
            self.log.info("pod.replacing_failed", pod=f"{key[0]}/{key[1]}")
        await self.stop_pods(failed)
        mine = [k for k, o in self.owners.items() if o.deployment == spec.key]
        want = Owner(spec.key, spec.template_hash, meshed, proxy)
        current = [k for k in mine if self.owners[k] == want]
        old = [k for k in mine if k not in current]
        for _ in range(spec.replicas - len(current)):
            current.append(await self.start_pod(spec, meshed, proxy))
        if len(current) > spec.replicas:
            # least ready first, then newest
            order = sorted(current, key=lambda k: (self.pods[k].state.ready, -current.index(k)))
            await self.stop_pods(order[: len(current) - spec.replicas])
        if old and all(self.pods[k].state.ready for k in current if k in self.pods):
            await self.stop_pods(old)

    async def _forget_pods_deleted_from_store(self) -> None:
        objs, _ = await self.store.list("Pod")
        present = {(o.namespace, o.name) for o in objs}
        gone = [k for k in self.written if k not in present and k in self.pods]
        for key in gone:
            self.log.info("pod.deleted_from_store", pod=f"{key[0]}/{key[1]}")
        await self.stop_pods(gone)

    # --- one pod ---------------------------------------------------------

    def render(self, pod: LocalPod) -> tuple[str, str, str]:
        names = [ServiceName(s.name, s.namespace, s.cluster_ip) for s in self.services if s.cluster_ip is not None]
        # the cluster domain is the trust domain, as in a default Kubernetes/Istio install
        hosts = render_hosts(pod=pod.name, namespace=pod.namespace, pod_ip=pod.ip, services=names,
                             cluster_domain=self.cfg.trust_domain)
        capture = CaptureConfig(proxy_ports=self.cfg.proxy_ports, proxy_gid=self.cfg.proxy_gid) if pod.meshed else None
        tables = nat_table(capture, dnat.nat_rules(self.rules)) + dnat.filter_table(self.rules)
        return hosts, render_resolv_conf(pod.namespace, self.cfg.trust_domain), tables

    async def start_pod(self, spec: DeploymentSpec, meshed: bool,
                        proxy: ProxySettings = DEFAULT_SETTINGS) -> tuple[str, str]:
        name = f"{spec.name}-{random_suffix()}"
        while (spec.namespace, name) in self.pods:
            name = f"{spec.name}-{random_suffix()}"
        key = (spec.namespace, name)
        ip = self.ipam.allocate(f"{spec.namespace}/{name}")
        pod = self.pod_factory(self.settings, spec, name, ip=ip, meshed=meshed, on_change=self.mark_dirty,
                               log=self.log, render=self.render, proxy=proxy)
        self.pods[key] = pod
        self.owners[key] = Owner(spec.key, spec.template_hash, meshed, proxy)
        self.written[key] = None
        try:
            token = secrets.token_urlsafe(32)
            d = pod_dir(self.cfg, spec.namespace, name)
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / "token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token)
            await self.store.apply([workload_token(spec, name, hashlib.sha256(token.encode()).hexdigest())])
            await self.store.apply([pod_resource(pod)])
        except (StoreError, OSError):
            await self.stop_pod(key)  # never keep a pod that was only half created
            raise
        self.log.info("pod.starting", pod=f"{spec.namespace}/{name}", ip=str(ip), meshed=meshed,
                      proxy_concurrency=proxy.concurrency, proxy_config=proxy.source or None)
        pod.start()
        return key

    async def stop_pod(self, key: tuple[str, str]) -> None:
        pod = self.pods.pop(key, None)
        self.owners.pop(key, None)
        self.written.pop(key, None)
        if pod is None:
            return
        self.log.info("pod.stopping", pod=f"{key[0]}/{key[1]}")
        try:
            await pod.stop()
        finally:
            self.ipam.release(f"{key[0]}/{key[1]}")
            for kind in ("Pod", "WorkloadToken"):
                try:
                    await self.store.delete(kind, key[0], key[1])
                except StoreError as e:
                    self.log.warning("pod.delete_resource_failed", kind=kind, error=str(e))
        self.mark_dirty()

    async def _write_statuses(self, wanted: dict[tuple[str, str], DeploymentSpec],
                              generations: dict[tuple[str, str], int]) -> None:
        for key, pod in list(self.pods.items()):
            snap = pod.state.snapshot()
            if self.written.get(key) == snap:
                continue
            try:
                await self.store.update_status(pod_resource(pod))
                self.written[key] = snap
            except StoreError as e:
                self.log.warning("pod.status_write_failed", pod=f"{key[0]}/{key[1]}", error=str(e))
        for dkey, spec in wanted.items():
            owned = [self.pods[k] for k, o in self.owners.items() if o.deployment == dkey and k in self.pods]
            updated = [p for k, p in ((k, self.pods[k]) for k, o in self.owners.items()
                                      if o.deployment == dkey and o.template_hash == spec.template_hash and k in self.pods)]
            status = deployment_status(owned, updated, generations.get(dkey, 0))
            if self.deploy_status_written.get(dkey) == status:
                continue
            obj = await self.store.get("Deployment", dkey[0], dkey[1])
            if obj is None:
                continue
            try:
                await self.store.update_status(obj.with_status(status))
                self.deploy_status_written[dkey] = status
            except StoreError as e:
                self.log.warning("deployment.status_write_failed", deployment=f"{dkey[0]}/{dkey[1]}", error=str(e))
