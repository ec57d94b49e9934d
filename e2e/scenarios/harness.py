"""What every e2e scenario needs: a throw-away mesh running Bookinfo, and polling helpers.

`new_target()` is the one place scenarios get their mesh: a local test mesh
(default) or the Kubernetes cluster of the current kube context when
MESHLET_E2E_TARGET=kube (or `pytest e2e/scenarios --mesh-target=kube`);
`stop_target()` tears either down. Scenarios needing something only a local
mesh has call `local_only(target, why)`: on kube they are skipped as not
applicable, with that reason.

`isolated_settings()` gives a test mesh its own state dir, bridge, netns
prefix and /24 pod and service ranges inside 198.18.0.0/15: a slot derived
from the process id, skipping slots whose bridge or range is already on the
host, so concurrent runs (and a developer's default mesh) do not collide.
`BookinfoMesh` brings Bookinfo up through a `MeshTarget`, waits for the pods
and tears everything down again.
"""
from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from meshlet.e2e.pods import PodInfo
from meshlet.e2e.target import (
    LocalMeshTarget,
    LocalTargetSettings,
    MeshTarget,
    TargetError,
    make_target,
    target_kind,
    wait_for_pods,
)

BOOKINFO_DIR = Path(__file__).resolve().parent.parent / "apps" / "bookinfo"
NAMESPACE = "bookinfo"
LEGACY_NAMESPACE = "legacy"
BOOKINFO_PODS = 7  # details, ratings, reviews v1/v2/v3, productpage, sleep
LEGACY_PODS = 1
UP_TIMEOUT = 240.0
SLOT_BASE = 50
SLOTS = 200

T = TypeVar("T")


def mesh_unavailable_reason() -> str | None:
    """Why a local mesh cannot run here (not root, `meshlet up` not built yet), or None (always None for kube)."""
    if target_kind() == "kube":
        return None
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables)"
    if importlib.util.find_spec("meshlet.controller.cli.up") is None:
        return "`meshlet up` is not implemented yet (meshlet.controller.cli.up missing)"
    return None


def host_networks() -> list[ipaddress.IPv4Network]:
    """Networks of the host's IPv4 interface addresses (`ip -o -4 addr`)."""
    try:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    nets = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            try:
                nets.append(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]).network)
            except (ValueError, IndexError):
                continue
    return nets


def host_links() -> set[str]:
    try:
        out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.count(":") >= 2}


def pick_slot(seed: int, taken_networks: list[ipaddress.IPv4Network], taken_links: set[str]) -> int:
    """First slot from `seed` on whose bridge name is free and whose /24 no narrower-or-equal host network overlaps.

    A default mesh's 198.18.0.0/16 on its bridge does not count: our /24 is the
    more specific route and its addresses (allocated from .0.2 up) stay clear.
    """
    for i in range(SLOTS):
        n = (seed + i) % SLOTS
        net = ipaddress.IPv4Network(f"198.18.{SLOT_BASE + n}.0/24")
        if f"mle2e{n}" in taken_links:
            continue
        if any(t.prefixlen >= net.prefixlen and t.overlaps(net) for t in taken_networks):
            continue
        return n
    raise RuntimeError("no free 198.18.x.0/24 slot for a test mesh")


def isolated_settings(state_dir: Path, seed: int | None = None) -> LocalTargetSettings:
    n = pick_slot(os.getpid() if seed is None else seed, host_networks(), host_links())
    return LocalTargetSettings(
        state_dir=state_dir,
        bridge=f"mle2e{n}",
        netns_prefix=f"e{n}-",
        pod_cidr=f"198.18.{SLOT_BASE + n}.0/24",
        service_cidr=f"198.19.{SLOT_BASE + n}.0/24",
        command_timeout=UP_TIMEOUT,
    )


def poll(fn: Callable[[], T | None], *, timeout: float, interval: float = 0.5, what: str) -> T:
    """Call `fn` until it returns something other than None; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = fn()
        except (TargetError, OSError, ValueError) as exc:
            last, value = exc, None
        if value is not None:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last})" if last else ""))


@dataclass
class BookinfoMesh:
    """A running mesh with Bookinfo and the sleep clients."""

    target: MeshTarget
    pods: list[PodInfo]
    legacy_pods: list[PodInfo]

    def pod(self, app: str, version: str | None = None, namespace: str = NAMESPACE) -> PodInfo:
        pods = self.pods if namespace == NAMESPACE else self.legacy_pods
        for p in pods:
            if p.labels.get("app") == app and (version is None or p.labels.get("version") == version):
                return p
        raise AssertionError(f"no pod app={app} version={version} in {namespace}: {[p.name for p in pods]}")

    def curl(self, pod: PodInfo, url: str, *headers: str, timeout: float = 20.0) -> tuple[int, str]:
        """`curl` inside `pod`: (HTTP status or 0 when curl failed, body)."""
        argv = ["curl", "-s", "-m", "10", "-w", "\n%{http_code}"]
        for h in headers:
            argv += ["-H", h]
        proc = self.target.exec(pod.namespace, pod.name, [*argv, url], timeout=timeout)
        body, _, code = proc.stdout.rpartition("\n")
        return (int(code) if code.strip().isdigit() else 0), body

    def curl_json_lines(self, pod: PodInfo, url: str, count: int, *headers: str) -> list[dict]:
        """`count` sequential GETs from one `sh` loop inside `pod`; the JSON bodies that parsed."""
        hdrs = " ".join(f"-H {shlex.quote(h)}" for h in headers)
        script = f"for i in $(seq {int(count)}); do curl -s -m 10 {hdrs} {shlex.quote(url)}; echo; done"
        proc = self.target.exec(pod.namespace, pod.name, ["sh", "-c", script], timeout=30 + count * 2)
        out = []
        for line in proc.stdout.splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out


def start_bookinfo(target: MeshTarget) -> BookinfoMesh:
    target.up(BOOKINFO_DIR)
    pods = wait_for_pods(target, NAMESPACE, expect=BOOKINFO_PODS, timeout=UP_TIMEOUT)
    legacy = wait_for_pods(target, LEGACY_NAMESPACE, expect=LEGACY_PODS, timeout=UP_TIMEOUT)
    return BookinfoMesh(target=target, pods=pods, legacy_pods=legacy)


OWNER_FILE = "e2e-owner.json"
"""Written into each test mesh's state dir: the pid of the test process and the mesh's network settings."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(tmp_dir: Path | None = None) -> list[Path]:
    """Take down test meshes whose test process died before its teardown (killed by a timeout, say).

    Only `meshlet-e2e-*` temp dirs with an owner file naming a dead pid are
    touched; a mesh being created (no owner file yet) or still owned is left alone.
    """
    reaped = []
    for state_dir in sorted(Path(tmp_dir or tempfile.gettempdir()).glob("meshlet-e2e-*")):
        try:
            owner = json.loads((state_dir / OWNER_FILE).read_text())
            pid = int(owner["pid"])
            net = owner["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _pid_alive(pid):
            continue
        settings = LocalTargetSettings(state_dir=state_dir, bridge=net.get("bridge"),
                                       netns_prefix=net.get("netns_prefix"), pod_cidr=net.get("pod_cidr"),
                                       service_cidr=net.get("service_cidr"), command_timeout=60)
        try:
            stop_local(LocalMeshTarget(settings))
        except TargetError:
            continue
        reaped.append(state_dir)
    return reaped


def new_local_target() -> LocalMeshTarget:
    reap_orphans()
    state_dir = Path(tempfile.mkdtemp(prefix="meshlet-e2e-"))
    settings = isolated_settings(state_dir)
    owner = {"pid": os.getpid(), "settings": {"bridge": settings.bridge, "netns_prefix": settings.netns_prefix,
                                              "pod_cidr": settings.pod_cidr, "service_cidr": settings.service_cidr}}
    (state_dir / OWNER_FILE).write_text(json.dumps(owner))
    return LocalMeshTarget(settings)


def stop_local(target: LocalMeshTarget) -> None:
    """`meshlet down`, then remove the temporary state dir (only a `meshlet-e2e-` temp dir)."""
    try:
        target.run(["down"], check=False)
    finally:
        state_dir = target.settings.state_dir
        if state_dir.name.startswith("meshlet-e2e-") and state_dir.parent == Path(tempfile.gettempdir()):
            shutil.rmtree(state_dir, ignore_errors=True)


def new_target() -> MeshTarget:
    """The mesh the scenarios run against: MESHLET_E2E_TARGET=local (default) or kube."""
    if target_kind() == "kube":
        from meshlet.e2e.kubetarget import KubeTargetSettings
        return make_target(KubeTargetSettings.from_env())
    return new_local_target()


def stop_target(target: MeshTarget) -> None:
    if isinstance(target, LocalMeshTarget):
        stop_local(target)
    else:
        target.down()


def local_only(target: MeshTarget, why: str) -> LocalMeshTarget:
    """`target` as a local mesh; on any other target the scenario is skipped as not applicable, saying `why`."""
    if not isinstance(target, LocalMeshTarget):
        from meshlet.e2e.kubetarget import KubeMeshTarget
        kind = "kube" if isinstance(target, KubeMeshTarget) else type(target).__name__
        pytest.skip(f"not applicable on the {kind} target: {why}")
    return target
