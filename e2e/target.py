"""The seam between e2e scenarios (and the demo) and a running mesh.

`MeshTarget` is what scenarios may ask of a mesh: bring manifests up, list
pods, exec a command in a pod, reach a pod's port from the test host.
`LocalMeshTarget` implements it with `meshlet up/down/get/exec` subprocesses
against one state directory (and its own bridge, netns prefix and CIDRs, so
a test mesh never touches the default one); `KubeMeshTarget`
(meshlet.e2e.kubetarget) implements it over the Kubernetes API.
`make_target(settings)` builds either from its settings; `target_kind(env)`
reads the one switch, MESHLET_E2E_TARGET=local|kube (default local).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from meshlet.e2e.pods import PodInfo, PodListError, parse_names, parse_pods

if TYPE_CHECKING:
    from meshlet.e2e.kubetarget import KubeTargetSettings

TARGET_ENV = "MESHLET_E2E_TARGET"
TARGET_KINDS = ("local", "kube")


class TargetError(RuntimeError):
    """A mesh operation failed; the message carries the command and its stderr."""


class MeshTarget(Protocol):
    def up(self, manifests: Path) -> None: ...

    def down(self) -> None: ...

    def apply(self, manifests: Path) -> None: ...

    def delete(self, kind: str, namespace: str, name: str) -> None: ...

    def pods(self, namespace: str) -> list[PodInfo]: ...

    def deployments(self, namespace: str) -> list[str]: ...

    def exec(self, namespace: str, pod: str, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]: ...

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str: ...

    def pod_address(self, pod: PodInfo, port: int) -> str:
        """`host:port` the test host can connect to for `pod`'s `port`."""
        ...


@dataclass(frozen=True)
class LocalTargetSettings:
    """One local mesh: its state dir and, for test meshes, its own network names and ranges."""

    state_dir: Path
    bridge: str | None = None
    netns_prefix: str | None = None
    pod_cidr: str | None = None
    service_cidr: str | None = None
    meshlet_argv: tuple[str, ...] = (sys.executable, "-m", "meshlet.controller.cli.main")
    command_timeout: float = 120.0
    """Upper bound for any one `meshlet` command (`up` included)."""

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["MESHLET_STATE_DIR"] = str(self.state_dir)
        for key, value in (("MESHLET_BRIDGE", self.bridge), ("MESHLET_NETNS_PREFIX", self.netns_prefix),
                           ("MESHLET_POD_CIDR", self.pod_cidr), ("MESHLET_SERVICE_CIDR", self.service_cidr)):
            if value:
                env[key] = value
        return env


class LocalMeshTarget:
    """`MeshTarget` over the `meshlet` CLI of a local mesh."""

    def __init__(self, settings: LocalTargetSettings) -> None:
        self.settings = settings

    def __repr__(self) -> str:
        return f"<LocalMeshTarget state_dir={self.settings.state_dir}>"

    def run(self, args: Sequence[str], *, timeout: float | None = None, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [*self.settings.meshlet_argv, *args]
        try:
            proc = subprocess.run(argv, env=self.settings.env(), capture_output=True, text=True, input=input,
                                  check=False, timeout=timeout or self.settings.command_timeout)
        except subprocess.TimeoutExpired as exc:
            raise TargetError(f"`meshlet {' '.join(args)}` did not finish in {exc.timeout}s") from None
        if check and proc.returncode != 0:
            raise TargetError(f"`meshlet {' '.join(args)}` exited {proc.returncode}: "
                              f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
        return proc

    def up(self, manifests: Path) -> None:
        self.run(["up", "-f", str(manifests)])

    def apply(self, manifests: Path) -> None:
        self.run(["apply", "-f", str(manifests)])

    def down(self) -> None:
        self.run(["down"])

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.run(["delete", kind, name, "-n", namespace])

    def pods(self, namespace: str) -> list[PodInfo]:
        out = self.run(["get", "pods", "-n", namespace, "-o", "json"]).stdout
        try:
            return parse_pods(out)
        except PodListError as exc:
            raise TargetError(f"`meshlet get pods -n {namespace} -o json`: {exc}") from None

    def deployments(self, namespace: str) -> list[str]:
        proc = self.run(["get", "deployments", "-n", namespace, "-o", "json"], check=False)
        if proc.returncode != 0:
            return []
        try:
            return parse_names(proc.stdout)
        except PodListError:
            return []

    def exec(self, namespace: str, pod: str, argv: Sequence[str],
             timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.run(["exec", "-n", namespace, pod, "--", *argv], timeout=timeout, check=False)

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        args = ["logs", "-n", namespace, pod] + (["-c", container] if container else [])
        proc = self.run(args, check=False, timeout=30)
        return proc.stdout + proc.stderr

    def pod_address(self, pod: PodInfo, port: int) -> str:
        if not pod.ip:
            raise TargetError(f"pod {pod.key} has no IP yet")
        return f"{pod.ip}:{port}"


def wait_for_pods(target: MeshTarget, namespace: str, *, expect: int, timeout: float = 180.0,
                  interval: float = 1.0) -> list[PodInfo]:
    """Poll until `expect` pods of `namespace` are ready with an IP; TargetError on timeout."""
    deadline = time.monotonic() + timeout
    pods: list[PodInfo] = []
    last_error = ""
    while time.monotonic() < deadline:
        try:
            pods = target.pods(namespace)
            last_error = ""
        except TargetError as exc:
            last_error = str(exc)
        ready = [p for p in pods if p.ready and p.ip]
        if len(ready) >= expect:
            return ready
        time.sleep(interval)
    states = ", ".join(f"{p.name}:{p.phase or '?'}{'/ready' if p.ready else ''}" for p in pods) or "none"
    raise TargetError(f"{namespace}: {expect} ready pods wanted within {timeout}s; pods: {states}"
                      + (f"; last error: {last_error}" if last_error else ""))


def target_kind(env: Mapping[str, str] | None = None) -> str:
    """`local` or `kube` from MESHLET_E2E_TARGET (default local); ValueError naming the allowed values."""
    value = (os.environ if env is None else env).get(TARGET_ENV, "").strip().lower() or "local"
    if value not in TARGET_KINDS:
        raise ValueError(f"{TARGET_ENV}={value!r}: expected one of {', '.join(TARGET_KINDS)}")
    return value


def make_target(settings: LocalTargetSettings | KubeTargetSettings) -> MeshTarget:
    """The mesh target its settings describe: a local mesh or a Kubernetes cluster."""
    if isinstance(settings, LocalTargetSettings):
        return LocalMeshTarget(settings)
    from meshlet.e2e.kubetarget import KubeMeshTarget, KubeTargetSettings
    if isinstance(settings, KubeTargetSettings):
        return KubeMeshTarget(settings)
    raise TypeError(f"no mesh target for settings of type {type(settings).__name__}")
