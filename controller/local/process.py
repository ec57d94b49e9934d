"""Supervised processes of a pod: start in the pod's netns, restart with backoff, stop cleanly.

Each process runs through `ip netns exec <netns>` (which also bind-mounts
/etc/netns/<netns>/hosts over /etc/hosts) in its own session, so stopping
kills its whole process group. stdout and stderr are appended to one log file.
"""
from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    reset_after: float = 10.0
    """A run at least this long resets the delay to `initial`."""

    def next(self, previous: float) -> float:
        return self.initial if previous <= 0 else min(previous * 2, self.maximum)


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    log_path: Path
    cwd: str | None = None


def netns_argv(netns: str, argv: tuple[str, ...], *, uid: int | None = None, gid: int | None = None) -> tuple[str, ...]:
    """`ip netns exec` + optional `setpriv` to drop to a uid/gid (uid stays root if only gid is given)."""
    prefix: tuple[str, ...] = ("ip", "netns", "exec", netns)
    if uid is not None or gid is not None:
        prefix += ("setpriv",)
        if uid is not None:
            prefix += ("--reuid", str(uid))
        if gid is not None:
            prefix += ("--regid", str(gid))
        prefix += ("--clear-groups", "--")
    return prefix + argv


class Supervised:
    """One process kept running: restarted with backoff when it exits, until `stop`."""

    def __init__(self, spec: ProcessSpec, *, log: structlog.stdlib.BoundLogger, backoff: Backoff = Backoff()) -> None:
        self.spec = spec
        self.log = log.bind(process=spec.name)
        self.backoff = backoff
        self.restarts = 0
        self.last_exit: int | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"supervise-{self.spec.name}")

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spec.log_path, "ab", buffering=0) as logf:
            return await asyncio.create_subprocess_exec(
                *self.spec.argv, env=dict(self.spec.env), cwd=self.spec.cwd or None,
                stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)

    async def _run(self) -> None:
        delay = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            try:
                self.proc = await self._spawn()
            except OSError as e:
                self.log.error("process.spawn_failed", error=str(e))
                code = -1
            else:
                self.log.info("process.started", pid=self.proc.pid)
                code = await self.proc.wait()
            if self._stopping:
                return
            self.last_exit = code
            self.restarts += 1
            delay = self.backoff.initial if loop.time() - started >= self.backoff.reset_after else self.backoff.next(delay)
            self.log.warning("process.exited", code=code, restarts=self.restarts, restart_in=delay)
            with open(self.spec.log_path, "ab") as logf:
                logf.write(f"--- meshlet: process exited with {code}; restart {self.restarts} in {delay:.1f}s ---\n".encode())
            await asyncio.sleep(delay)

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            _killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                _killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            # return_exceptions: the task's own CancelledError is collected, ours still propagates
            await asyncio.gather(self._task, return_exceptions=True)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def listening_ports(proc_net_tcp: str) -> set[int]:
    """Local ports in LISTEN state from the text of /proc/<pid>/net/tcp or tcp6."""
    ports: set[int] = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":
            try:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
            except (IndexError, ValueError):
                continue
    return ports


def netns_listening_ports(pid: int) -> set[int]:
    """Listening TCP ports of the network namespace `pid` lives in."""
    ports: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            ports |= listening_ports(Path(f"/proc/{pid}/net/{name}").read_text())
        except OSError:
            continue
    return ports
