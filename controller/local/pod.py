"""One local pod: network, sidecar proxy, app containers, readiness.

Start order (Istio's holdApplicationUntilProxyStarts): network namespace and
veth, name files, iptables, then the proxy (root, gid 1337), waiting for its
admin `/ready`, then the app containers (uid 0). Afterwards a probe loop keeps
`status` current and calls `on_change` whenever it changes; crashed processes
are restarted by their supervisors.
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from meshlet.controller.config import LocalConfig, spiffe_id
from meshlet.controller.local import netns
from meshlet.controller.local.names import PodNames, pod_names
from meshlet.controller.local.nsprobe import http_probe, tcp_probe
from meshlet.controller.local.probe import http_ok
from meshlet.controller.local.process import (
    ProcessSpec,
    Supervised,
    netns_argv,
    netns_listening_ports,
)
from meshlet.controller.local.proxyconfig import ProxySettings, pod_labels_env
from meshlet.controller.local.resources import TEMPLATE_HASH_LABEL, now_rfc3339
from meshlet.controller.local.spec import Container, DeploymentSpec, Probe

PROBE_TIMEOUT = 2.0
FAILURE_THRESHOLD = 3
"""Consecutive failed proxy /ready probes before a ready pod counts as not ready."""
PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TZ")


@dataclass(frozen=True)
class RuntimeSettings:
    local: LocalConfig
    proxy_argv: tuple[str, ...] = (sys.executable, "-m", "meshlet.proxy")
    proxy_ready_timeout: float = 60.0
    """How long the app waits for its proxy to become ready (then starts anyway)."""
    probe_interval: float = 1.0
    proxy_log_level: str = "info"


@dataclass
class ContainerState:
    name: str
    ready: bool = False
    restarts: int = 0
    running: bool = False


@dataclass
class PodState:
    phase: str = "Pending"
    ready: bool = False
    message: str = ""
    containers: list[ContainerState] = field(default_factory=list)

    def snapshot(self) -> tuple[object, ...]:
        return (self.phase, self.ready, self.message,
                tuple((c.name, c.ready, c.restarts, c.running) for c in self.containers))


def pod_dir(cfg: LocalConfig, namespace: str, pod: str) -> Path:
    return cfg.state_dir / "pods" / namespace / pod


def app_log_name(index: int, container: Container) -> str:
    return "app.log" if index == 0 else f"app-{container.name}.log"


def resolve_argv(argv: tuple[str, ...]) -> tuple[str, ...]:
    """`python`/`python3` run the mesh's own interpreter (where meshlet is installed)."""
    if argv and argv[0] in ("python", "python3"):
        return (sys.executable, *argv[1:])
    return argv


class LocalPod:
    def __init__(self, settings: RuntimeSettings, deploy: DeploymentSpec, name: str, *,
                 ip: ipaddress.IPv4Address, meshed: bool, on_change: Callable[[], None],
                 log: structlog.stdlib.BoundLogger,
                 render: Callable[[LocalPod], tuple[str, str, str]],
                 proxy: ProxySettings | None = None) -> None:
        self.settings = settings
        self.proxy_settings = proxy or ProxySettings()
        """From ProxyConfig (runtime.proxy_settings): passed to the proxy's environment."""
        self.cfg = settings.local
        self.deploy = deploy
        self.namespace = deploy.namespace
        self.name = name
        self.ip = ip
        self.meshed = meshed
        self.names: PodNames = pod_names(self.cfg.netns_prefix, self.namespace, name)
        self.dir = pod_dir(self.cfg, self.namespace, name)
        self.on_change = on_change
        self.log = log.bind(pod=f"{self.namespace}/{name}", ip=str(ip))
        self.state = PodState(containers=[ContainerState(c.name) for c in deploy.containers])
        self.proxy: Supervised | None = None
        self.apps: list[Supervised] = []
        self.proxy_ready = False
        self.applied_tables = ""
        self.applied_names = ("", "")
        self.render = render
        self.started_at = now_rfc3339()
        self.failed_at: float | None = None
        """Loop time when start-up failed (the runtime replaces the pod a little later)."""
        """Current (hosts, resolv.conf, iptables payload) of this pod, from the runtime."""
        self._net_lock = asyncio.Lock()
        self._network_up = False
        self._proxy_failures = 0
        self._probe_failures: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def token_path(self) -> Path:
        return self.dir / "token"

    # --- lifecycle -------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod-{self.namespace}-{self.name}")

    async def _run(self) -> None:
        try:
            async with self._net_lock:
                await netns.create_pod_network(self.names, bridge=self.cfg.bridge, ip=self.ip,
                                               cidr=self.cfg.pod_cidr, gateway=self.cfg.gateway_ip)
                self._network_up = True
            await self.refresh_network()
            if self.meshed:
                self.proxy = Supervised(self._proxy_spec(), log=self.log)
                self.proxy.start()
                loop = asyncio.get_running_loop()
                deadline = loop.time() + self.settings.proxy_ready_timeout
                while not await http_ok(str(self.ip), self.cfg.proxy_ports.admin, "/ready", timeout=1.0):
                    if loop.time() >= deadline:
                        self.log.warning("pod.proxy_not_ready", waited=self.settings.proxy_ready_timeout)
                        break
                    await asyncio.sleep(0.2)
            for i, c in enumerate(self.deploy.containers):
                sup = Supervised(self._app_spec(i, c), log=self.log)
                sup.start()
                self.apps.append(sup)
            self._set(phase="Running")
            while True:
                await self._probe()
                await asyncio.sleep(self.settings.probe_interval)
        except asyncio.CancelledError:
            raise
        except (netns.NetnsError, OSError) as e:
            self.log.error("pod.failed", error=str(e))
            self._fail(str(e))
        except Exception as e:  # a bug in one pod must not go unnoticed (the runtime replaces it)
            self.log.exception("pod.crashed")
            self._fail(f"internal error: {e!r}")

    def _fail(self, message: str) -> None:
        self.failed_at = asyncio.get_running_loop().time()
        self._set(phase="Failed", ready=False, message=message)

    async def refresh_network(self) -> None:
        """Rewrite name files / iptables if they changed (Services or endpoints moved)."""
        async with self._net_lock:
            if not self._network_up or self._stopped:
                return
            hosts, resolv, tables = self.render(self)
            if (hosts, resolv) != self.applied_names:
                netns.write_name_files(self.names.netns, hosts, resolv)
                self.applied_names = (hosts, resolv)
            if tables != self.applied_tables:
                await netns.apply_iptables(self.names.netns, tables)
                self.applied_tables = tables

    async def stop(self) -> None:
        """Stop processes and remove the network and files (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*(s.stop() for s in [*self.apps, *([self.proxy] if self.proxy else [])]),
                             return_exceptions=True)
        async with self._net_lock:
            self._network_up = False
            await netns.delete_pod_network(self.names)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- processes -------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        return {k: os.environ[k] for k in PASS_ENV if k in os.environ}

    def _proxy_spec(self) -> ProcessSpec:
        cfg = self.cfg
        env = self._base_env() | {
            "MESHLET_PROXY_IDENTITY": spiffe_id(cfg.trust_domain, self.namespace, self.deploy.service_account),
            "MESHLET_PROXY_TOKEN_FILE": str(self.token_path),
            "MESHLET_PROXY_TRUST_ANCHORS": str(cfg.state_dir / "identity" / "ca.crt"),
            "MESHLET_PROXY_DESTINATION_ADDR": cfg.destination_addr,
            "MESHLET_PROXY_IDENTITY_ADDR": cfg.identity_addr,
            "MESHLET_PROXY_NAMESPACE": self.namespace,
            "MESHLET_PROXY_POD": self.name,
            "MESHLET_PROXY_SERVICE_ACCOUNT": self.deploy.service_account,
            "MESHLET_PROXY_POD_IP": str(self.ip),
            "MESHLET_PROXY_LOG_LEVEL": self.settings.proxy_log_level,
        } | pod_labels_env(self.deploy.labels | {TEMPLATE_HASH_LABEL: self.deploy.template_hash}) \
          | self.proxy_settings.env()
        argv = netns_argv(self.names.netns, self.settings.proxy_argv, gid=cfg.proxy_gid)
        return ProcessSpec(name="proxy", argv=argv, env=env, log_path=self.dir / "proxy.log")

    def _app_spec(self, index: int, c: Container) -> ProcessSpec:
        fields = {"metadata.name": self.name, "metadata.namespace": self.namespace,
                  "status.podIP": str(self.ip), "spec.serviceAccountName": self.deploy.service_account}
        env = self._base_env() | {
            "POD_NAME": self.name, "POD_NAMESPACE": self.namespace, "POD_IP": str(self.ip),
            "SERVICE_ACCOUNT": self.deploy.service_account,
        }
        for e in c.env:
            env[e.name] = fields[e.field_path] if e.field_path else e.value
        argv = netns_argv(self.names.netns, resolve_argv(c.argv))
        return ProcessSpec(name=c.name, argv=argv, env=env, log_path=self.dir / app_log_name(index, c),
                           cwd=c.working_dir or None)

    # --- status ----------------------------------------------------------

    def _set(self, **changes: object) -> None:
        before = self.state.snapshot()
        for k, v in changes.items():
            setattr(self.state, k, v)
        if self.state.snapshot() != before:
            self.on_change()

    async def _probe(self) -> None:
        before = self.state.snapshot()
        if self.proxy is not None:
            ok = self.proxy.pid is not None and await http_ok(
                str(self.ip), self.cfg.proxy_ports.admin, "/ready", timeout=PROBE_TIMEOUT)
            # like Kubernetes' failureThreshold: a busy proxy missing one probe stays ready
            self._proxy_failures = 0 if ok else self._proxy_failures + 1
            self.proxy_ready = ok or (self.proxy_ready and self.proxy.pid is not None
                                      and self._proxy_failures < FAILURE_THRESHOLD)
        for c, sup, cs in zip(self.deploy.containers, self.apps, self.state.containers):
            pid = sup.pid
            cs.running = pid is not None
            cs.restarts = sup.restarts
            if pid is None:
                cs.ready = False
            elif c.readiness is not None:
                cs.ready = await self._readiness(c.name, c.readiness, cs.ready)
            else:
                wanted = {p.port for p in c.ports if p.protocol == "tcp"}
                cs.ready = not wanted or wanted <= netns_listening_ports(pid)
        self.state.ready = all(cs.ready for cs in self.state.containers) and (self.proxy is None or self.proxy_ready)
        self.state.message = "" if self.state.ready else self._not_ready_reason()
        if self.state.snapshot() != before:
            self.on_change()

    async def _readiness(self, container: str, probe: Probe, was_ready: bool) -> bool:
        """Run the container's readiness probe from inside the pod (see `nsprobe`)."""
        host = str(self.ip)
        if probe.kind == "http":
            ok = await http_probe(self.names.netns, host, probe.port, probe.path, PROBE_TIMEOUT)
        else:
            ok = await tcp_probe(self.names.netns, host, probe.port, PROBE_TIMEOUT)
        failures = 0 if ok else self._probe_failures.get(container, 0) + 1
        self._probe_failures[container] = failures
        return ok or (was_ready and failures < probe.failure_threshold)

    def _not_ready_reason(self) -> str:
        if self.proxy is not None and not self.proxy_ready:
            return "proxy not ready"
        waiting = [cs.name for cs in self.state.containers if not cs.ready]
        return f"containers not ready: {', '.join(waiting)}" if waiting else ""

    def proxy_restarts(self) -> int:
        return self.proxy.restarts if self.proxy else 0
