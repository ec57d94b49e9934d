"""Measuring one running peer: idle memory, fixed-rate latency, maximum
throughput, memory and CPU under load. The load tool runs in the client's
namespace, pinned to the client CPUs.
"""
from __future__ import annotations

import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from bench.load import ClosedLoop, FixedRate, LoadError, oha_cmd, parse_oha, parse_wrk, wrk_cmd
from bench.model import PeerResult, SidecarStats
from bench.peers import BenchEnv, Peer, RunningPeer
from bench.procs import PeakSampler, http_get_status, pinned, tree_cpu_seconds, tree_rss

MB = 1024 * 1024
VERIFY_TIMEOUT = 30.0


class Logger(Protocol):
    def __call__(self, message: str) -> None: ...


class VerifyError(RuntimeError):
    """Requests through the peer do not succeed, so measuring it is pointless."""


@dataclass(frozen=True)
class LoadPlan:
    rates: tuple[int, ...] = (500, 2000)
    seconds: int = 10
    warmup_seconds: int = 2
    connections: int = 32
    wrk_connections: int = 32
    idle_settle_seconds: float = 1.0


def _client_netns(env: BenchEnv, running: RunningPeer) -> str:
    return running.client_netns or env.topo.client.netns


def _load(env: BenchEnv, netns: str, argv: list[str], timeout: float) -> str:
    cmd = pinned(argv, netns=netns, cpus=env.client_cpus)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"{argv[0]} did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise LoadError(f"{' '.join(argv[:3])}… exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def verify(env: BenchEnv, running: RunningPeer) -> None:
    """Poll until one GET through the peer returns 200 (discovery may still be settling)."""
    url = urlsplit(running.url)
    host, port = url.hostname or "", url.port or 80
    worker = env.worker(_client_netns(env, running))
    deadline = time.monotonic() + VERIFY_TIMEOUT
    status: int | None = None
    while time.monotonic() < deadline:
        status = worker.call(http_get_status, host, port)
        if status == 200:
            return
        time.sleep(0.05)
    raise VerifyError(f"GET {running.url} through {running.name} never returned 200 (last: {status})")


def fixed_rate(env: BenchEnv, running: RunningPeer, oha: Path, rate: int, seconds: int,
               connections: int) -> FixedRate:
    argv = oha_cmd(oha, running.url, rate=rate, seconds=seconds, connections=connections)
    return parse_oha(rate, _load(env, _client_netns(env, running), argv, timeout=seconds + 60))


def closed_loop(env: BenchEnv, running: RunningPeer, seconds: int, connections: int) -> ClosedLoop:
    argv = wrk_cmd(running.url, seconds=seconds, connections=connections)
    return parse_wrk(connections, _load(env, _client_netns(env, running), argv, timeout=seconds + 60))


def measure(env: BenchEnv, peer: Peer, oha: Path, plan: LoadPlan, log: Logger) -> PeerResult:
    log(f"[{peer.name}] starting")
    with peer.start(env) as running:
        for s in running.sidecars:
            log(f"[{peer.name}] {s.side}-side up (pid {s.pid}), start to ready {s.start_to_ready_ms:.0f} ms")
        verify(env, running)
        time.sleep(plan.idle_settle_seconds)
        idle = {s.side: tree_rss(s.pid) for s in running.sidecars}
        if plan.warmup_seconds:
            fixed_rate(env, running, oha, plan.rates[0], plan.warmup_seconds, plan.connections)
        fixed: list[FixedRate] = []
        cpu_per_req: dict[str, float] = {}
        with ExitStack() as stack:
            peaks = {s.side: stack.enter_context(PeakSampler(lambda pid=s.pid: tree_rss(pid)))
                     for s in running.sidecars}
            for rate in plan.rates:
                before = {s.side: tree_cpu_seconds(s.pid) for s in running.sidecars}
                result = fixed_rate(env, running, oha, rate, plan.seconds, plan.connections)
                after = {s.side: tree_cpu_seconds(s.pid) for s in running.sidecars}
                if result.requests:
                    cpu_per_req = {k: (after[k] - before[k]) / result.requests * 1e6 for k in before}
                fixed.append(result)
                log(f"[{peer.name}] {rate} req/s: p50 {result.p50_ms:.3f} p99 {result.p99_ms:.3f} "
                    f"p99.9 {result.p999_ms:.3f} ms, achieved {result.achieved_rps:.0f}/s")
            closed = closed_loop(env, running, plan.seconds, plan.wrk_connections)
            log(f"[{peer.name}] closed loop: {closed.rps:.0f} req/s")
        note = getattr(peer, "note", "")
        mtls_seen = getattr(peer, "mtls_seen", None)
        if mtls_seen is not None and mtls_seen() is False:
            note += "; WARNING: the server proxy's metrics show no inbound request with tls=\"true\""
        ready_ms = {s.side: s.start_to_ready_ms for s in running.sidecars}
        restart_timer = getattr(peer, "restart_to_ready_ms", None)
        if restart_timer is not None:
            for side in ready_ms:
                ready_ms[side] = restart_timer(side)
                log(f"[{peer.name}] {side}-side proxy restart: start to ready {ready_ms[side]:.0f} ms")
        sidecars = tuple(
            SidecarStats(side=s.side, start_to_ready_ms=ready_ms[s.side], rss_idle_mb=idle[s.side] / MB,
                         rss_load_mb=max(peaks[s.side].peak, idle[s.side]) / MB,
                         cpu_us_per_request=cpu_per_req.get(s.side))
            for s in running.sidecars
        )
        return PeerResult(name=peer.name, fixed=tuple(fixed), closed=closed, sidecars=sidecars, note=note)


