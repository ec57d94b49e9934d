"""One benchmark at a time, and clean-up after a crashed one.

`exclusive()` holds an flock on /run/meshlet-bench.lock for the whole run.
Holding it, every process that still refers to another run's scratch
directory (`/tmp/meshlet-bench-*`, in its command line or MESHLET_* environment: the
sidecars, the backend, the bench mesh's control plane, proxies and server) is
a leftover of a run that died without cleaning up, and `stop_leftovers` ends
it. Namespaces and bridges are removed by `bench.topology.setup` and by
`meshlet up` itself.
"""
from __future__ import annotations

import fcntl
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_PATH = Path("/run/meshlet-bench.lock")
WORKDIR_PREFIX = "meshlet-bench-"
_WORKDIR_RE = re.compile(rb"/" + WORKDIR_PREFIX.encode() + rb"[A-Za-z0-9_]+")


class BenchBusy(RuntimeError):
    """Another benchmark run holds the lock."""


@contextmanager
def exclusive(path: Path = LOCK_PATH) -> Iterator[None]:
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BenchBusy(f"another benchmark is running (lock {path} is held)") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def workdirs_of(pid: int) -> set[bytes]:
    """Bench scratch directories named in a process's command line or its MESHLET_* environment
    (a proxy's trust anchors); not other variables, so a shell whose PWD is a kept
    workdir is left alone."""
    found: set[bytes] = set()
    try:
        found.update(_WORKDIR_RE.findall(Path(f"/proc/{pid}/cmdline").read_bytes()))
        for var in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if var.startswith(b"MESHLET_"):
                found.update(_WORKDIR_RE.findall(var))
    except OSError:
        pass
    return found


def leftovers(current: Path) -> list[int]:
    mine = str(current).encode()
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        dirs = workdirs_of(int(entry))
        if dirs and not any(mine.endswith(d) or mine == d for d in dirs):
            pids.append(int(entry))
    return pids


def stop_leftovers(current: Path, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, processes of earlier, crashed runs. Call only under `exclusive()`."""
    pids = leftovers(current)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.05)
    return pids
