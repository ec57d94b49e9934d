"""The real-path mesh of the proxy tests: constants, the `Mesh` handle and its helpers."""
from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from proxy_netns import GATEWAY, Net, Pod, http_get, stop, wait_for

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

    def metrics(self, pod: Pod) -> str:
        status, body = http_get(f"http://{pod.ip}:15090/metrics")
        assert status == 200
        return body

    def start_destination(self) -> None:
        log = self.tmp / "destination.log"
        self.destination = _popen([sys.executable, str(HERE / "fake_destination.py"), GATEWAY,
                                   str(self.destination_port), str(self.destination_fixture)], log)
        wait_for(lambda: _can_connect(GATEWAY, self.destination_port), "fake destination listening", log=log)

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
