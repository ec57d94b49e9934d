"""Real-path test topology: network namespaces on a private bridge, with nat capture rules.

    root netns: bridge <prefix>br 198.18.N.1/24 (control plane stand-ins listen here)
    ns a (meshed client)  198.18.N.10
    ns b (meshed server)  198.18.N.11
    ns c (unmeshed)       198.18.N.12

N (200..239) comes from the process id, so concurrent runs (other engineers, other
suites) do not share a subnet; 198.18.251.0/24 stays outside every run ("any address").

Everything created here carries a per-run prefix and is removed in `close()`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
SUBNET = f"198.18.{200 + os.getpid() % 40}"
GATEWAY = f"{SUBNET}.1"
PROXY_GID = 1337
PROXY_PORTS = (15000, 15001, 15006, 15021, 15090)


def sh(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, input=input, timeout=30)


def capture_rules() -> str:
    """The few nat rules of a meshed pod (Istio's shape)."""
    lines = ["*nat", ":MESHLET_INBOUND - [0:0]", ":MESHLET_OUTPUT - [0:0]",
             "-A PREROUTING -p tcp -j MESHLET_INBOUND"]
    lines += [f"-A MESHLET_INBOUND -p tcp --dport {p} -j RETURN" for p in PROXY_PORTS]
    lines += ["-A MESHLET_INBOUND -p tcp -j REDIRECT --to-ports 15006",
              "-A OUTPUT -p tcp -j MESHLET_OUTPUT",
              f"-A MESHLET_OUTPUT -m owner --gid-owner {PROXY_GID} -j RETURN",
              "-A MESHLET_OUTPUT -d 127.0.0.0/8 -j RETURN",
              "-A MESHLET_OUTPUT -p tcp -j REDIRECT --to-ports 15001",
              "COMMIT", ""]
    return "\n".join(lines)


@dataclass
class Pod:
    name: str
    netns: str
    ip: str
    meshed: bool
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.netns, *args], capture_output=True, text=True,
                              timeout=timeout)

    def python(self, code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-c", code, timeout=timeout)


class Net:
    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or f"mlpx{os.getpid() % 100000}"
        self.bridge = f"{self.tag}br"
        self.pods: dict[str, Pod] = {}
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{GATEWAY}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def add_pod(self, name: str, host: int, *, meshed: bool) -> Pod:
        netns = f"{self.tag}-{name}"
        veth, peer = f"{self.tag}{name}0", f"{self.tag}{name}1"
        ip = f"{SUBNET}.{host}"
        sh("ip", "netns", "add", netns)
        pod = self.pods[name] = Pod(name, netns, ip, meshed)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", veth, "master", self.bridge)
        sh("ip", "link", "set", veth, "up")
        sh("ip", "link", "set", peer, "netns", netns)
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", peer, "name", "eth0"],
                    ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"], ["ip", "link", "set", "eth0", "up"],
                    ["ip", "route", "add", "default", "via", GATEWAY]):
            sh("ip", "netns", "exec", netns, *cmd)
        if meshed:
            sh("ip", "netns", "exec", netns, "iptables-restore", "--noflush", input=capture_rules())
        return pod

    def start(self, pod: Pod, args: list[str], log: Path, *, env: dict[str, str] | None = None,
              gid: int | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "wb")
        proc = subprocess.Popen(["ip", "netns", "exec", pod.netns, *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                group=gid, extra_groups=[] if gid is not None else None, start_new_session=True)
        pod.procs.append(proc)
        return proc

    def close(self) -> None:
        for pod in self.pods.values():
            for proc in pod.procs:
                stop(proc)
        for pod in self.pods.values():
            sh("ip", "netns", "del", pod.netns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> int | None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(check, what: str, timeout: float = 60, interval: float = 0.05, log: Path | None = None):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(interval)
    extra = f"\n--- {log} ---\n{log.read_text(errors='replace')[-4000:]}" if log is not None and log.exists() else ""
    raise AssertionError(f"{what} not within {timeout}s (last: {last!r}){extra}")


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value))
    return path
