"""The real-path mesh of the proxy tests: constants, the `Mesh` handle and its helpers."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from proxy_netns import GATEWAY, PROXY_GID, Net, Pod, http_get, stop, wait_for, write_json

HERE = Path(__file__).parent
TRUST_DOMAIN = "cluster.local"
NS = "demo"
CLIENT_ID = f"spiffe://{TRUST_DOMAIN}/ns/{NS}/sa/client"
SERVER_ID = f"spiffe://{TRUST_DOMAIN}/ns/{NS}/sa/server"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Mesh:
    net: Net
    a: Pod
    b: Pod
    c: Pod
    tmp: Path
    trust_anchors: Path
    destination_port: int
    destination_fixture: Path
    destination: object = None
    identity: object = None
    state: Path | None = None

    def metrics(self, pod: Pod) -> str:
        status, body = http_get(f"http://{pod.ip}:15090/metrics")
        assert status == 200
        return body

    def start_destination(self) -> None:
        log = self.tmp / "destination.log"
        self.destination = _popen([sys.executable, str(HERE / "fake_destination.py"), GATEWAY,
                                   str(self.destination_port), str(self.destination_fixture),
                                   str(self.tmp / "profiles.json")], log)
        wait_for(lambda: _can_connect(GATEWAY, self.destination_port), "fake destination listening", log=log)

    def start_real_destination(self, state: Path) -> None:
        """`python -m meshlet.destination` on the store in `state` (instead of the stand-in)."""
        log = self.tmp / "destination.log"
        admin = free_port(GATEWAY)
        self.destination = _popen([sys.executable, "-m", "meshlet.destination", "--state-dir", str(state),
                                   "--listen", f"{GATEWAY}:{self.destination_port}",
                                   "--admin-listen", f"{GATEWAY}:{admin}"], log)
        wait_for(lambda: _can_connect(GATEWAY, self.destination_port), "destination listening", log=log)

    def stop_destination(self) -> None:
        if self.destination is not None:
            stop(self.destination)  # type: ignore[arg-type]
            self.destination = None


def _popen(args: list[str], log: Path):  # noqa: ANN202
    import subprocess

    return subprocess.Popen(args, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)


def _can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def write_tokens(state: Path, tokens: dict[str, tuple[str, bytes]]) -> None:
    """WorkloadTokens in identity's store: pod -> (service account, token)."""
    from meshlet.controller.model import Namespace, ObjectMeta, WorkloadToken, WorkloadTokenSpec
    from meshlet.controller.store import SqliteStore

    async def go() -> None:
        store = SqliteStore(state / "store.db")
        await store.apply([Namespace(metadata=ObjectMeta(name=NS))] + [
            WorkloadToken(metadata=ObjectMeta(name=pod, namespace=NS),
                          spec=WorkloadTokenSpec(service_account=sa, pod=pod,
                                                 token_sha256=hashlib.sha256(token).hexdigest()))
            for pod, (sa, token) in tokens.items()])
        await store.close()

    asyncio.run(go())


def store_apply(state: Path, resources: list) -> None:
    """Write resources to the store in `state` (as `meshlet apply` does)."""
    from meshlet.controller.store import SqliteStore

    async def go() -> None:
        store = SqliteStore(state / "store.db")
        await store.apply(resources)
        await store.close()

    asyncio.run(go())


def proxy_env(mesh_tmp: Path, pod: Pod, sa: str, token: bytes, identity_port: int, destination_port: int,
              trust_anchors: Path) -> dict[str, str]:
    token_file = mesh_tmp / f"{pod.name}.token"
    token_file.write_bytes(token)
    return {
        "MESHLET_PROXY_IDENTITY": f"spiffe://{TRUST_DOMAIN}/ns/{NS}/sa/{sa}",
        "MESHLET_PROXY_TOKEN_FILE": str(token_file),
        "MESHLET_PROXY_TRUST_ANCHORS": str(trust_anchors),
        "MESHLET_PROXY_DESTINATION_ADDR": f"{GATEWAY}:{destination_port}",
        "MESHLET_PROXY_IDENTITY_ADDR": f"{GATEWAY}:{identity_port}",
        "MESHLET_PROXY_NAMESPACE": NS,
        "MESHLET_PROXY_POD": pod.name,
        "MESHLET_PROXY_SERVICE_ACCOUNT": sa,
        "MESHLET_PROXY_POD_IP": pod.ip,
        "MESHLET_PROXY_LOG_LEVEL": "debug",
    }


@contextlib.contextmanager
def open_mesh(tmp: Path, extra=None, profiles=None, store=None, app_env=None):  # noqa: ANN001, ANN201
    """The real-path topology; `extra(a, b, c)` adds destination entries, `profiles(a, b, c)` profiles;
    `store(a, b, c)` gives resources for the store, served by the real destination instead."""
    net = Net()
    identity = None
    try:
        a = net.add_pod("a", 10, meshed=True)
        b = net.add_pod("b", 11, meshed=True)
        c = net.add_pod("c", 12, meshed=False)
        # identity: the real service, with the pods' workload tokens in its store
        state = tmp / "state"
        state.mkdir()
        tokens = {"a": ("client", os.urandom(16).hex().encode()), "b": ("server", os.urandom(16).hex().encode())}
        write_tokens(state, tokens)
        id_port, id_admin = free_port(GATEWAY), free_port(GATEWAY)
        id_log = tmp / "identity.log"
        identity = _popen([sys.executable, "-m", "meshlet.identity", "--state-dir", str(state),
                           "--listen", f"{GATEWAY}:{id_port}", "--admin-listen", f"{GATEWAY}:{id_admin}",
                           "--trust-domain", TRUST_DOMAIN], id_log)
        wait_for(lambda: http_get(f"http://{GATEWAY}:{id_admin}/ready")[0] == 200, "identity ready", log=id_log)
        anchors = state / "identity" / "ca.crt"
        # destination stand-in
        dst_port = free_port(GATEWAY)
        server_ep = lambda port: {"ip": b.ip, "port": port, "identity": SERVER_ID}  # noqa: E731
        labels = {"dst_service": "server", "dst_namespace": NS}
        entries = {
            f"{b.ip}:8080": {"labels": labels, "endpoints": [server_ep(8080)]},
            f"server.{NS}.svc.cluster.local:8080": {"labels": labels, "endpoints": [server_ep(8080)]},
            f"{b.ip}:2525": {"labels": labels, "endpoints": [server_ep(2525)]},
            f"{b.ip}:9999": {"labels": labels, "endpoints": [server_ep(9999)]},
            f"empty.{NS}.svc.cluster.local:80": {"labels": labels, "endpoints": []},
            f"plain.{NS}.svc.cluster.local:8080": {"labels": {"dst_service": "plain", "dst_namespace": NS},
                                                  "endpoints": [{"ip": c.ip, "port": 8080}]},
            f"both.{NS}.svc.cluster.local:8080": {"labels": {"dst_service": "both", "dst_namespace": NS},
                                                 "endpoints": [server_ep(8080), {"ip": c.ip, "port": 8080}]},
        }
        if extra is not None:
            entries.update(extra(a, b, c))
        fixture = write_json(tmp / "destinations.json", entries)
        if profiles is not None:
            write_json(tmp / "profiles.json", profiles(a, b, c))
        mesh = Mesh(net, a, b, c, tmp, anchors, dst_port, fixture, identity=identity)
        mesh.state = state
        if store is not None:
            store_apply(state, store(a, b, c))
            mesh.start_real_destination(state)
        else:
            mesh.start_destination()
        # workloads
        for pod in (b, c):
            log = tmp / f"apps-{pod.name}.log"
            net.start(pod, [sys.executable, str(HERE / "apps.py"), pod.name], log, env=app_env)
        for pod in (b, c):
            log = tmp / f"apps-{pod.name}.log"
            wait_for(lambda log=log: b"apps ready" in log.read_bytes(), f"apps in {pod.name}", log=log)
        # proxies
        for pod in (a, b):
            sa, token = tokens[pod.name]
            env = proxy_env(tmp, pod, sa, token, id_port, dst_port, anchors)
            net.start(pod, [sys.executable, "-m", "meshlet.proxy"], tmp / f"proxy-{pod.name}.log", env=env,
                      gid=PROXY_GID)
        for pod in (a, b):
            wait_for(lambda pod=pod: http_get(f"http://{pod.ip}:15000/ready", timeout=2)[0] == 200,
                     f"proxy in {pod.name} ready", log=tmp / f"proxy-{pod.name}.log")
        yield mesh
        mesh.stop_destination()
    finally:
        net.close()
        if identity is not None:
            stop(identity)
