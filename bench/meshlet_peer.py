"""The meshlet pair, run the way users run it: `meshlet up -f <bench manifests>`.

A private local mesh (own state dir, bridge `mltbm0`, netns prefix `mltbm-`,
pods in 198.18.253.0/24, Service VIPs in 198.19.253.0/24, so it never meets a
demo mesh, nor the e2e test meshes, which take /24 slots 50–249 of 198.18 and
198.19) runs two pods in the injected namespace `mltbench`:

* `bench-server`: the same nginx backend as the other peers (pinned to the
  server CPUs by its command), behind Service `bench-server:8080`;
* `bench-client`: `sleep infinity`; the load tool runs in its network
  namespace as root (gid 0), so the pod's iptables send it to the proxy.

Request path: load tool → REDIRECT → client proxy :15001 → mTLS → server pod
→ REDIRECT → server proxy :15006 → nginx. Once the pods are ready the proxies
are pinned (`taskset -a -p`) like the other sidecars.

Start to ready is measured after the load runs: the proxy is killed, its pod's
supervisor starts a new one, and the time from the new process's start (from
/proc, boot clock, 10 ms resolution) until its admin `/ready` answers 200
(polled every 5 ms) is the figure. Readiness needs the certificate from
identity, so this includes the CSR round trip.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import configs
from bench.peers import BenchEnv, RunningPeer, Sidecar
from bench.procs import CLK_TCK, http_get_status, renice_tree, wait_until

NAMESPACE = "mltbench"
SERVER, CLIENT = "bench-server", "bench-client"
PORT = 8080
ADMIN_PORT = 15000
METRICS_PORT = 15090
UP_TIMEOUT = 180.0
READY_TIMEOUT = 120.0


class MeshletPeerError(RuntimeError):
    """The bench mesh did not come up (or its pods cannot be found)."""


@dataclass(frozen=True)
class MeshSettings:
    bridge: str = "mltbm0"
    netns_prefix: str = "mltbm-"
    pod_cidr: str = "198.18.253.0/24"
    service_cidr: str = "198.19.253.0/24"

    def env(self, state_dir: Path) -> dict[str, str]:
        return {**os.environ, "MESHLET_STATE_DIR": str(state_dir), "MESHLET_BRIDGE": self.bridge,
                "MESHLET_NETNS_PREFIX": self.netns_prefix, "MESHLET_POD_CIDR": self.pod_cidr,
                "MESHLET_SERVICE_CIDR": self.service_cidr}


def manifests(server_argv: list[str], extra_argv: list[str] | None = None, extra_docs: str = "") -> str:
    """The bench workloads as Kubernetes YAML (pure): `extra_argv` is a second container of the
    server pod (the gRPC echo server), `extra_docs` more documents (Services, VirtualServices)."""
    import json

    cmd = json.dumps(server_argv)
    extra = ""
    if extra_argv:
        extra = f"""
      - name: grpc
        image: python
        command: {json.dumps(extra_argv)}"""
    tail = f"---\n{extra_docs.strip()}\n" if extra_docs.strip() else ""
    return f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    istio-injection: enabled
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {SERVER}, namespace: {NAMESPACE}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {CLIENT}, namespace: {NAMESPACE}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {SERVER}, namespace: {NAMESPACE}, labels: {{app: {SERVER}}}}}
spec:
  selector: {{app: {SERVER}}}
  ports:
  - {{name: http, port: {PORT}, targetPort: {PORT}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {SERVER}, namespace: {NAMESPACE}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {SERVER}}}}}
  template:
    metadata: {{labels: {{app: {SERVER}}}}}
    spec:
      serviceAccountName: {SERVER}
      containers:
      - name: server
        image: nginx
        command: {cmd}
        ports:
        - {{containerPort: {PORT}}}{extra}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {CLIENT}, namespace: {NAMESPACE}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {CLIENT}}}}}
  template:
    metadata: {{labels: {{app: {CLIENT}}}}}
    spec:
      serviceAccountName: {CLIENT}
      terminationGracePeriodSeconds: 0
      containers:
      - name: client
        image: busybox
        command: ["sleep", "infinity"]
{tail}"""


def service_ip_from_hosts(text: str, name: str) -> str | None:
    """The address a pod's hosts file gives `name` (pure)."""
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and name in fields[1:]:
            return fields[0]
    return None


# --- finding the pods' pieces --------------------------------------------------------

def _pod_netns(prefix: str, deployment: str) -> str | None:
    try:
        names = sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return None
    want = f"{prefix}{NAMESPACE}-{deployment}-"
    found = [n for n in names if n.startswith(want)]
    return found[0] if len(found) == 1 else None


def _netns_pids(netns: str) -> list[int]:
    proc = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, check=False, text=True, timeout=10)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _ppid(pid: int) -> int:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return int(raw[raw.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def proxy_pid(netns: str) -> int | None:
    """The root process of the meshlet proxy inside `netns`."""
    pids = [p for p in _netns_pids(netns) if "meshlet.proxy" in _cmdline(p)]
    roots = [p for p in pids if _ppid(p) not in pids]
    return roots[0] if len(roots) == 1 else None


def pod_ip(netns: str) -> str | None:
    proc = subprocess.run(["ip", "-n", netns, "-4", "-o", "addr", "show", "scope", "global"],
                          capture_output=True, check=False, text=True, timeout=10)
    m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", proc.stdout)
    return m.group(1) if m else None


def _app_pids(netns: str, program: str) -> list[int]:
    """Root processes in `netns` running `program` (the server pod's nginx master)."""
    # nginx rewrites its command line ("nginx: master process ..."), so match words.
    pids = [p for p in _netns_pids(netns)
            if program in " ".join(_cmdline(p)).replace(":", " ").split() and "meshlet.proxy" not in _cmdline(p)]
    return [p for p in pids if _ppid(p) not in pids]


def _start_boot_seconds(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return int(raw[raw.rindex(")") + 2:].split()[19]) / CLK_TCK  # field 22: starttime


def _pin(pid: int, cpus: str) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, timeout=10, check=True)


def _runtime_pids(path: Path) -> list[int]:
    """Control-plane pids recorded by `meshlet up` (any integer under a key naming a pid)."""
    import json

    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    found: list[int] = []

    def walk(value: object, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, int) and "pid" in key.lower() and value > 1:
            found.append(value)

    walk(doc)
    return found


@dataclass(frozen=True)
class _Pod:
    netns: str
    ip: str
    proxy: int


class MeshletPair:
    name = "meshlet"
    note = ("`meshlet up` with a private state dir and bridge; pods and proxies started by the local runtime; "
            "start→ready measured on a proxy restarted by its pod supervisor")

    def __init__(self, settings: MeshSettings = MeshSettings(), extra_docs: str = "", grpc: bool = False) -> None:
        self.settings = settings
        self.extra_docs = extra_docs
        """More manifests of the suites sharing this mesh (Services, VirtualServices)."""
        self.grpc = grpc
        """Run the gRPC echo server as a second container of the server pod."""
        self._pods: dict[str, _Pod] = {}
        self._users = 0

    def _meshlet(self, env: BenchEnv, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        state = env.workdir / "mesh-state"
        cmd = [sys.executable, "-m", "meshlet.controller.cli.main", "--state-dir", str(state), *args]
        return subprocess.run(cmd, capture_output=True, check=False, text=True, timeout=timeout, env=self.settings.env(state))

    def _find_pod(self, deployment: str) -> _Pod | None:
        netns = _pod_netns(self.settings.netns_prefix, deployment)
        if netns is None:
            return None
        ip, pid = pod_ip(netns), proxy_pid(netns)
        if ip is None or pid is None or http_get_status(ip, ADMIN_PORT, "/ready") != 200:
            return None
        return _Pod(netns=netns, ip=ip, proxy=pid)

    def _wait_pod(self, deployment: str) -> _Pod:
        found: list[_Pod] = []

        def probe() -> bool:
            pod = self._find_pod(deployment)
            if pod is not None:
                found.append(pod)
            return pod is not None

        wait_until(probe, what=f"pod {NAMESPACE}/{deployment} with a ready proxy", timeout=READY_TIMEOUT,
                   interval=0.2)
        return found[-1]

    def sidecars(self) -> tuple[Sidecar, ...]:
        return (Sidecar(side="server", pid=self._pods["server"].proxy, start_to_ready_ms=None),
                Sidecar(side="client", pid=self._pods["client"].proxy, start_to_ready_ms=None))

    @property
    def client_netns(self) -> str:
        return self._pods["client"].netns

    def vip(self, service: str) -> str:
        """The Service's address as the client pod resolves it."""
        hosts = Path(f"/etc/netns/{self.client_netns}/hosts")
        vip = service_ip_from_hosts(hosts.read_text() if hosts.exists() else "", service)
        if vip is None:
            raise MeshletPeerError(f"no address for {service} in {hosts}")
        return vip

    @contextmanager
    def mesh(self, env: BenchEnv) -> Iterator[MeshletPair]:
        """The bench mesh, shared by every peer that uses it: up on first use, down after the last."""
        if self._users == 0:
            self._up(env)
        self._users += 1
        try:
            yield self
        finally:
            self._users -= 1
            if self._users == 0:
                self._down(env)

    @contextmanager
    def start(self, env: BenchEnv) -> Iterator[RunningPeer]:
        with self.mesh(env):
            yield RunningPeer(name=self.name, url=f"http://{self.vip(SERVER)}:{PORT}/", sidecars=self.sidecars(),
                              client_netns=self.client_netns)

    def _up(self, env: BenchEnv) -> None:
        workdir = env.workdir / "meshlet"
        (workdir / "server").mkdir(parents=True, exist_ok=True)
        conf = workdir / "server" / "nginx.conf"
        conf.write_text(configs.nginx_backend(workdir / "server", PORT))
        server_argv = ["taskset", "-c", env.server_cpus, "nginx", "-p", str(workdir / "server"), "-e", "stderr",
                       "-c", str(conf)]
        mdir = workdir / "manifests"
        mdir.mkdir(exist_ok=True)
        extra_argv = None
        if self.grpc:
            from bench.peers import grpc_server_argv

            extra_argv = ["taskset", "-c", env.server_cpus, *grpc_server_argv(sys.executable)]
        (mdir / "bench.yaml").write_text(manifests(server_argv, extra_argv, self.extra_docs))
        try:
            up = self._meshlet(env, "up", "-f", str(mdir), timeout=UP_TIMEOUT)
            if up.returncode != 0:
                raise MeshletPeerError(f"meshlet up failed ({up.returncode}): {(up.stderr or up.stdout).strip()[-600:]}")
            server, client = self._wait_pod(SERVER), self._wait_pod(CLIENT)
            self._pods = {"server": server, "client": client}
            _pin(server.proxy, env.server_cpus)
            _pin(client.proxy, env.client_cpus)
            if env.nice:
                apps = [*_app_pids(server.netns, "nginx"), *_app_pids(server.netns, "grpc_echo.py")]
                for pid in (server.proxy, client.proxy, *apps):
                    renice_tree(pid, env.nice)
        except BaseException:
            self._down(env)
            raise

    def mtls_seen(self) -> bool | None:
        """Whether the server proxy's metrics show TLS-secured inbound requests."""
        pod = self._pods.get("server")
        if pod is None:
            return None
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{pod.ip}:{METRICS_PORT}/metrics", timeout=5) as resp:
                text = resp.read().decode(errors="replace")
        except OSError:
            return None
        return bool(re.search(r'direction="inbound"[^}]*tls="true"|tls="true"[^}]*direction="inbound"', text))

    def restart_to_ready_ms(self, side: str) -> float:
        """Kill the side's proxy; time its successor from process start to `/ready` 200."""
        pod = self._pods[side]
        os.kill(pod.proxy, signal.SIGKILL)
        new: list[int] = []

        def restarted() -> bool:
            pid = proxy_pid(pod.netns)
            if pid is not None and pid != pod.proxy:
                new.append(pid)
            return bool(new)

        wait_until(restarted, what=f"{side} proxy restarted by its supervisor", timeout=READY_TIMEOUT, interval=0.005)
        started = _start_boot_seconds(new[0])
        wait_until(lambda: http_get_status(pod.ip, ADMIN_PORT, "/ready") == 200,
                   what=f"restarted {side} proxy ready", timeout=READY_TIMEOUT, interval=0.005)
        ready = time.clock_gettime(time.CLOCK_BOOTTIME)
        self._pods[side] = _Pod(netns=pod.netns, ip=pod.ip, proxy=new[0])
        return (ready - started) * 1000.0

    def _down(self, env: BenchEnv) -> None:
        state = env.workdir / "mesh-state"
        try:
            ok = self._meshlet(env, "down", timeout=UP_TIMEOUT).returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if not ok:
            # Only processes of this bench mesh: their command line names its private state dir.
            for pid in _runtime_pids(state / "runtime.json"):
                if str(state) in " ".join(_cmdline(pid)):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        # Whatever `meshlet down` left behind (it failed, or never started properly).
        prefix = self.settings.netns_prefix
        for name in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else []):
            if name.startswith(prefix + NAMESPACE):
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.settings.bridge], capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)
