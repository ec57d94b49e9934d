"""The local mesh's control-plane processes: what `meshlet up/down/check` start, find and stop.

`<state>/runtime.json` records the pid and command of destination, identity
and the runtime daemon. Processes are detached (own session, stdout/stderr in
`<state>/logs/<name>.log`) so they outlive the `meshlet up` that started them.
A pid only counts as ours if /proc/<pid>/cmdline still names its module and
our state dir (pids get reused after a crash).
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from meshlet.controller.config import LocalConfig

RUNTIME_JSON = "runtime.json"
RUNTIME_READY = "runtime.ready"


class ControlPlaneError(Exception):
    """A control-plane process cannot be started, found or stopped."""


@dataclass(frozen=True)
class Component:
    name: str
    module: str
    argv: tuple[str, ...]
    admin: tuple[str, int] | None
    """Host and port of the admin server (`/ready`), None for the runtime (ready file)."""
    log: Path


def components(cfg: LocalConfig) -> list[Component]:
    """In stop order reversed: destination and identity first, the runtime (which needs them) last."""
    gw, sd, py = str(cfg.gateway_ip), str(cfg.state_dir), sys.executable
    logs = cfg.state_dir / "logs"
    return [
        Component("destination", "meshlet.destination",
                  (py, "-m", "meshlet.destination", "--state-dir", sd, "--listen", cfg.destination_addr),
                  (gw, cfg.cp_ports.destination_admin), logs / "destination.log"),
        Component("identity", "meshlet.identity",
                  (py, "-m", "meshlet.identity", "--state-dir", sd, "--listen", cfg.identity_addr),
                  (gw, cfg.cp_ports.identity_admin), logs / "identity.log"),
        Component("runtime", "meshlet.controller.local",
                  (py, "-m", "meshlet.controller.local", "--state-dir", sd), None, logs / "runtime.log"),
    ]


def child_env(cfg: LocalConfig) -> dict[str, str]:
    """The environment of control-plane processes: ours plus the mesh's settings spelled out."""
    return dict(os.environ) | {
        "MESHLET_STATE_DIR": str(cfg.state_dir),
        "MESHLET_POD_CIDR": str(cfg.pod_cidr),
        "MESHLET_SERVICE_CIDR": str(cfg.service_cidr),
        "MESHLET_BRIDGE": cfg.bridge,
        "MESHLET_NETNS_PREFIX": cfg.netns_prefix,
        "MESHLET_TRUST_DOMAIN": cfg.trust_domain,
    }


@contextmanager
def state_lock(cfg: LocalConfig) -> Iterator[None]:
    """Serialise `up` and `down` on one state dir."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    with open(cfg.state_dir / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_pids(cfg: LocalConfig) -> dict[str, int]:
    path = cfg.state_dir / RUNTIME_JSON
    try:
        data = json.loads(path.read_text())
        return {str(k): int(v["pid"]) for k, v in data.get("processes", {}).items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def write_pids(cfg: LocalConfig, pids: dict[str, int]) -> None:
    by_name = {c.name: c for c in components(cfg)}
    data = {"bridge": cfg.bridge, "netns_prefix": cfg.netns_prefix, "pod_cidr": str(cfg.pod_cidr),
            "processes": {n: {"pid": p, "argv": list(by_name[n].argv), "log": str(by_name[n].log)}
                          for n, p in pids.items()}}
    tmp = cfg.state_dir / (RUNTIME_JSON + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, cfg.state_dir / RUNTIME_JSON)


def clear_records(cfg: LocalConfig) -> None:
    for name in (RUNTIME_JSON, RUNTIME_READY):
        (cfg.state_dir / name).unlink(missing_ok=True)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_ours(pid: int, component: Component, cfg: LocalConfig) -> bool:
    argv = cmdline(pid)
    if component.module not in argv or str(cfg.state_dir) not in argv:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def find_running(cfg: LocalConfig) -> dict[str, int]:
    """Live control-plane processes of this state dir: recorded pids, else a /proc scan."""
    comps = {c.name: c for c in components(cfg)}
    found = {n: p for n, p in read_pids(cfg).items() if n in comps and is_ours(p, comps[n], cfg)}
    missing = [c for n, c in comps.items() if n not in found]
    if missing:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            for c in missing:
                if c.name not in found and is_ours(int(entry.name), c, cfg):
                    found[c.name] = int(entry.name)
    return found


def start(component: Component, cfg: LocalConfig) -> int:
    component.log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(component.log, "ab") as log:
            proc = subprocess.Popen(component.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=child_env(cfg), start_new_session=True, cwd="/")
    except OSError as e:
        raise ControlPlaneError(f"cannot start {component.name} ({' '.join(component.argv)}): {e}") from None
    return proc.pid


def stop(pid: int, *, grace: float) -> bool:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL. True if it had to be killed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return False
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.1)
    return True


def _alive(pid: int) -> bool:
    try:
        # reap it if it is our child (a `meshlet up` that started it in this process)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text.splitlines()[-lines:])
