"""ProxyConfig `concurrency`: N worker processes sharing the data listeners.

`MESHLET_PROXY_CONCURRENCY=N` (N > 1; 0 = one per core) makes `python -m
meshlet.proxy` a small parent that starts N workers (`python -m meshlet.proxy`
again, with `MESHLET_PROXY_WORKER` set). Each worker is a whole proxy
(`app.Proxy`): its own certificate (its own key and CSR), discovery streams and
pools, listening on 15001/15006 with SO_REUSEPORT so the kernel spreads new
connections over the workers.

The parent keeps admin 15000, metrics 15090 and health 15021. It talks to
each worker over a private Unix socket (abstract name, passed to the worker as
an inherited listening fd) with the admin HTTP protocol: `/ready` is ready when
every worker is, `/metrics` adds the workers' series up (workermetrics.py),
`/config_dump` is worker 0's with `workers` (pid, ready, restarts, requests and
connections per worker) added. A worker that exits is restarted with backoff;
workers die with the parent (PR_SET_PDEATHSIG, and a parent check at start).
Concurrency 1 never imports this module: the single-process path is unchanged.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from . import admin, workermetrics
from .app import Proxy
from .config import ProxyConfig

WORKER_ENV = "MESHLET_PROXY_WORKER"
"""Set by the parent only: `<index>:<control fd>:<parent pid>`."""
ASK_TIMEOUT = 2.0
PR_SET_PDEATHSIG = 1


class WorkerError(RuntimeError):
    """A worker did not answer on its control socket (the message says which and why)."""


@dataclass(frozen=True)
class WorkerRole:
    index: int
    control_fd: int
    parent_pid: int

    @classmethod
    def parse(cls, value: str) -> WorkerRole:
        parts = value.split(":")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"{WORKER_ENV} must be <index>:<fd>:<parent pid>, got {value!r}")
        return cls(int(parts[0]), int(parts[1]), int(parts[2]))


def listen_shared(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listener that other workers bind too (SO_REUSEPORT: the kernel balances accepts)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        s.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from None
    s.listen(backlog)
    s.setblocking(False)
    return s


# === worker side ===

class WorkerProxy(Proxy):
    """A proxy whose admin routes are served on the control socket instead of TCP ports."""

    def __init__(self, cfg: ProxyConfig, log: Any, control: socket.socket) -> None:
        super().__init__(cfg, log)
        self.control = control

    async def _serve_admin(self) -> None:
        self._servers.append(await admin.serve_socket(self.control, {
            ("GET", "/ready"): self._ready, ("GET", "/config_dump"): self._config_dump,
            ("GET", "/metrics"): self._metrics, ("POST", "/shutdown"): self._shutdown,
        }))

    def _listen(self, host: str, port: int) -> socket.socket:
        return listen_shared(host, port)

    def _log_listening(self) -> None:
        self.log.info("proxy.worker_listening", outbound=self.cfg.ports.outbound, inbound=self.cfg.ports.inbound)


def _die_with_parent(parent_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's SIGTERM on shutdown still reaches us
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        raise SystemExit(0)


async def run_worker(cfg: ProxyConfig, log: Any, role: WorkerRole) -> None:
    control = socket.socket(fileno=role.control_fd)
    control.setblocking(False)
    proxy = WorkerProxy(cfg, log, control)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, proxy.stopping.set)
    await proxy.start()
    await proxy.run_until_stopped()


# === parent side ===

class Worker:
    """The parent's handle of one worker slot (its process is replaced when it exits)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.address = f"\0meshlet-proxy.{os.getpid()}.{secrets.token_hex(6)}.{index}"
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    async def spawn(self, argv: list[str]) -> None:
        self.address = f"\0meshlet-proxy.{os.getpid()}.{secrets.token_hex(6)}.{self.index}"
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            control.bind(self.address)
            control.listen(16)
            env = {**os.environ, WORKER_ENV: f"{self.index}:{control.fileno()}:{os.getpid()}"}
            self.proc = await asyncio.create_subprocess_exec(*argv, env=env, pass_fds=(control.fileno(),))
        finally:
            control.close()  # the worker holds its copy; connects fail fast once it is gone

    async def ask(self, method: str, path: str, timeout: float = ASK_TIMEOUT) -> tuple[int, bytes]:
        """One admin request to the worker (a fresh connection each, so a late answer harms nothing)."""
        try:
            return await asyncio.wait_for(self._ask(method, path), timeout)
        except TimeoutError:  # before OSError, whose subclass it is
            raise WorkerError(f"worker {self.index}: {method} {path}: no answer within {timeout}s") from None
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            raise WorkerError(f"worker {self.index}: {method} {path}: {type(e).__name__}: {e}") from None

    async def _ask(self, method: str, path: str) -> tuple[int, bytes]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:  # uvloop refuses abstract names in open_unix_connection(path): connect first
            await asyncio.get_running_loop().sock_connect(sock, self.address)
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        try:
            writer.write(f"{method} {path} HTTP/1.1\r\nhost: worker\r\nconnection: close\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                           if k.strip().lower() == "content-length"), 0)
            return status, await reader.readexactly(length)
        finally:
            writer.close()


class Parent:
    """Admin, metrics and health for N workers; supervises them."""

    def __init__(self, cfg: ProxyConfig, log: Any, concurrency: int, argv: list[str] | None = None) -> None:
        self.cfg = cfg
        self.log = log
        self.argv = argv or [sys.executable, "-m", "meshlet.proxy"]
        self.workers = [Worker(i) for i in range(concurrency)]
        self.stopping = asyncio.Event()
        self.started = time.monotonic()
        self.registry = CollectorRegistry(auto_describe=False)
        self.restarts = Counter("proxy_worker_restart_total", "Proxy worker processes restarted",
                                ("namespace", "pod"), registry=self.registry)
        Gauge("proxy_workers", "Proxy worker processes configured (ProxyConfig concurrency)",
              ("namespace", "pod"), registry=self.registry).labels(cfg.namespace, cfg.pod).set(concurrency)
        self.restarts.labels(cfg.namespace, cfg.pod)
        self._tasks: list[asyncio.Task[None]] = []
        self._servers: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        cfg, loop = self.cfg, asyncio.get_running_loop()
        self._servers.append(await admin.serve(cfg.bind_ip, cfg.ports.admin, {
            ("GET", "/ready"): self._ready, ("GET", "/live"): self._live,
            ("GET", "/config_dump"): self._config_dump, ("POST", "/shutdown"): self._shutdown,
        }))
        self._servers.append(await admin.serve(cfg.bind_ip, cfg.ports.metrics, {
            ("GET", "/metrics"): self._metrics, ("GET", "/stats/prometheus"): self._metrics,
        }))
        self._servers.append(await admin.serve(cfg.bind_ip, cfg.ports.health, {
            ("GET", "/healthz/ready"): self._ready,
        }))
        for w in self.workers:
            await w.spawn(self.argv)
            self._tasks.append(loop.create_task(self._supervise(w), name=f"worker {w.index}"))
        self.log.info("proxy.workers_started", concurrency=len(self.workers),
                      pids=[w.pid for w in self.workers], admin=cfg.ports.admin)

    async def _supervise(self, w: Worker) -> None:
        """Restart the worker whenever it exits (backoff 0.2 s doubling to 5 s; reset after 10 s up)."""
        delay = 0.0
        while True:
            assert w.proc is not None
            began = time.monotonic()
            code = await w.proc.wait()
            if self.stopping.is_set():
                return
            self.log.warning("proxy.worker_exited", worker=w.index, code=code)
            if time.monotonic() - began > 10:
                delay = 0.0
            while True:
                delay = min(delay * 2, 5.0) if delay > 0 else 0.2
                await asyncio.sleep(delay)
                if self.stopping.is_set():
                    return
                try:
                    await w.spawn(self.argv)
                    break
                except OSError as e:  # fork/exec failed (memory, fds): try again after the backoff
                    self.log.error("proxy.worker_spawn_failed", worker=w.index, error=str(e))
            w.restarts += 1
            self.restarts.labels(self.cfg.namespace, self.cfg.pod).inc()
            self.log.info("proxy.worker_restarted", worker=w.index, pid=w.pid)

    async def _each(self, method: str, path: str) -> list[tuple[int, bytes] | WorkerError]:
        async def one(w: Worker) -> tuple[int, bytes] | WorkerError:
            try:
                return await w.ask(method, path)
            except WorkerError as e:
                return e
        return list(await asyncio.gather(*(one(w) for w in self.workers)))

    async def ready(self) -> tuple[bool, str]:
        if self.stopping.is_set():
            return False, "draining"
        answers = await self._each("GET", "/ready")
        waiting = [w.index for w, a in zip(self.workers, answers, strict=True)
                   if isinstance(a, WorkerError) or a[0] != 200]
        return (not waiting, f"workers not ready: {waiting}" if waiting else "")

    async def _ready(self) -> tuple[int, str, bytes]:
        ok, why = await self.ready()
        return admin.text(200, "ready\n") if ok else admin.text(503, f"not ready: {why}\n")

    async def _live(self) -> tuple[int, str, bytes]:
        return admin.text(200, "live\n")

    async def _shutdown(self) -> tuple[int, str, bytes]:
        asyncio.get_running_loop().call_soon(self.stopping.set)
        return admin.text(200, "shutting down\n")

    async def _worker_metrics(self) -> list[str | None]:
        return [a[1].decode() if not isinstance(a, WorkerError) and a[0] == 200 else None
                for a in await self._each("GET", "/metrics")]

    async def _metrics(self) -> tuple[int, str, bytes]:
        from prometheus_client import CONTENT_TYPE_LATEST

        texts = [t for t in await self._worker_metrics() if t is not None]
        try:
            body = workermetrics.render(workermetrics.merge(texts))
        except workermetrics.ExpositionError as e:
            self.log.warning("proxy.worker_metrics_invalid", error=str(e))
            body = b""
        return 200, CONTENT_TYPE_LATEST, body + generate_latest(self.registry)

    async def _config_dump(self) -> tuple[int, str, bytes]:
        import json

        def parse(answer: tuple[int, bytes] | WorkerError) -> tuple[dict[str, Any] | None, str]:
            if isinstance(answer, WorkerError):
                return None, str(answer)
            try:
                d = json.loads(answer[1])
            except ValueError as e:
                return None, f"unparsable config_dump: {e}"
            return (d, "") if isinstance(d, dict) else (None, "config_dump is not an object")

        def count(text: str | None, name: str, **match: str) -> float | None:
            try:
                return workermetrics.total(text, name, **match) if text else None
            except (ValueError, IndexError):
                return None

        dumps = [parse(a) for a in await self._each("GET", "/config_dump")]
        metrics = await self._worker_metrics()
        rows = []
        for w, (d, error), m in zip(self.workers, dumps, metrics, strict=True):
            rows.append({
                "index": w.index, "pid": w.pid, "restarts": w.restarts,
                "ready": d is not None and d.get("ready") is True, "error": error,
                "request_total": count(m, "request_total"),
                "tcp_open_total": count(m, "tcp_open_total", peer="src"),
            })
        base = dumps[0][0] or {"config": self.cfg.public()}
        return admin.as_json(200, base | {
            "ready": all(r["ready"] for r in rows) and not self.stopping.is_set(),
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "concurrency": len(self.workers), "workers": rows,
        })

    async def shutdown(self) -> None:
        """Workers drain (SIGTERM: their graceful shutdown), then everything closes."""
        self.stopping.set()
        self.log.info("proxy.draining", workers=len(self.workers))
        for w in self.workers:
            if w.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        waits = [w.proc.wait() for w in self.workers if w.proc is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.cfg.drain_timeout + 5)
        except TimeoutError:
            for w in self.workers:
                if w.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        w.proc.kill()  # type: ignore[union-attr]
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            server.close()
        self.log.info("proxy.stopped")


async def run_parent(cfg: ProxyConfig, log: Any, concurrency: int) -> None:
    parent = Parent(cfg, log, concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, parent.stopping.set)
    try:
        await parent.start()
        await parent.stopping.wait()
    finally:
        await asyncio.shield(parent.shutdown())


def main() -> int:
    """Entry of `python -m meshlet.proxy` when concurrency is not 1 or this is a worker."""
    import logging

    import uvloop
    from meshlet.controller.log import setup

    from .app import main as single
    from .config import ConfigError

    role_env = os.environ.get(WORKER_ENV, "")
    try:
        cfg = ProxyConfig.from_env()
        role = WorkerRole.parse(role_env) if role_env else None
    except (ConfigError, ValueError) as e:
        print(f"meshlet-proxy: {e}", file=sys.stderr)
        return 2
    if role is None and cfg.concurrency <= 1:
        return single()
    log = setup("proxy", cfg.log_level).bind(namespace=cfg.namespace, pod=cfg.pod)
    for noisy in ("hpack", "h2", "grpclib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if role is not None:
            _die_with_parent(role.parent_pid)
            uvloop.run(run_worker(cfg, log.bind(worker=role.index), role))
        else:
            uvloop.run(run_parent(cfg, log, cfg.concurrency))
    except OSError as e:
        log.error("proxy.failed", error=e.strerror or str(e))
        return 1
    return 0
