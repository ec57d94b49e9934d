"""Processes of a benchmark run: spawn pinned inside a namespace, wait until ready,
read their memory and CPU time from /proc, stop them.

Every process starts in its own session, so a daemon's workers (nginx) are found
by session id and measured and stopped together.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class ProcessError(RuntimeError):
    """A benchmark process failed to start, exited early or never became ready."""


def pinned(argv: Sequence[str], *, netns: str | None = None, cpus: str | None = None, nice: int = 0) -> list[str]:
    """`argv` wrapped in `ip netns exec`, `taskset` and `nice` (all exec, so the pid is the program's)."""
    cmd = list(argv)
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return cmd


@dataclass
class Proc:
    """A spawned process, the wall-clock time it was started at and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    started_at: float
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise ProcessError(f"{self.name} exited with {self.popen.returncode}; log tail:\n{tail(self.log)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def spawn(name: str, argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None,
          netns: str | None = None, cpus: str | None = None, nice: int = 0) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        started = time.time()
        popen = subprocess.Popen(
            pinned(argv, netns=netns, cpus=cpus, nice=nice), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
    return Proc(name=name, popen=popen, started_at=started, log=log)


def stop(proc: Proc, timeout: float = 10.0) -> None:
    """SIGTERM the process's session, then SIGKILL what is left after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_pids(proc.pid) or [proc.pid]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        if not session_pids(proc.pid):
            return


# --- /proc readings --------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces: fields after the closing parenthesis are fixed.
    return raw[raw.rindex(")") + 2:].split()


def session_pids(sid: int) -> list[int]:
    """Live pids whose session id is `sid` (the process and everything it forked)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        # after ")": state(0) ppid(1) pgrp(2) session(3)
        if fields is not None and int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_pids(root: int) -> list[int]:
    """`root` and all its live descendants (nginx master and workers, say)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    if _stat_fields(root) is None:
        return []
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def renice_tree(root: int, nice: int) -> None:
    """Set the nice value of every thread of `root`'s process tree (nice is per thread on Linux)."""
    for pid in tree_pids(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                os.setpriority(os.PRIO_PROCESS, int(tid), nice)
            except OSError:
                pass


def tree_rss(root: int) -> int:
    return sum(rss_bytes(pid) for pid in tree_pids(root))


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of the process tree's live processes."""
    total = 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def _statm_rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


class RssPeaks:
    """Peak RSS of several process trees, sampled in one thread while a block runs.

    The trees are re-discovered every `refresh` seconds (a /proc scan); in
    between only the known pids' statm is read, so sampling stays cheap on a
    busy machine. `peaks` persists across blocks (enter it once per load run).
    """

    def __init__(self, roots: dict[str, int], interval: float = 0.2, refresh: float = 2.0) -> None:
        self.roots = dict(roots)
        self.peaks: dict[str, int] = {k: 0 for k in roots}
        self._interval, self._refresh = interval, refresh
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        trees: dict[str, list[int]] = {}
        refreshed = 0.0
        while not self._stop.is_set():
            if time.monotonic() - refreshed > self._refresh:
                trees = {k: tree_pids(pid) for k, pid in self.roots.items()}
                refreshed = time.monotonic()
            for key, pids in trees.items():
                self.peaks[key] = max(self.peaks[key], sum(_statm_rss(p) for p in pids))
            self._stop.wait(self._interval)

    def __enter__(self) -> Self:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rss-peaks")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# --- doing things from inside a network namespace ---------------------------------

def _enter_netns(netns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsWorker:
    """One thread living inside a network namespace (setns affects only the calling thread)."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"netns-{netns}",
                                        initializer=_enter_netns, initargs=(netns,))

    def call(self, fn: Callable[..., T], *args: object, timeout: float = 60.0) -> T:
        return self._pool.submit(fn, *args).result(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def tcp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_get_status(host: str, port: int, path: str = "/") -> int | None:
    """Status code of a plain HTTP/1.1 GET, None when nothing answers properly."""
    try:
        with socket.create_connection((host, port), timeout=2.0) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            head = sock.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return None
    return int(parts[1])


def wait_until(probe: Callable[[], bool], *, what: str, timeout: float, procs: Sequence[Proc] = (),
               interval: float = 0.005) -> float:
    """Poll `probe` until it is true; returns the wall-clock time it first was.

    Fails early when one of `procs` exits, with its log tail.
    """
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return time.time()
        for proc in procs:
            proc.check_alive()
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{tail(p.log)}" for p in procs)
            raise ProcessError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(interval)
