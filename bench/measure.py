"""Measuring the peers: idle memory, fixed-rate latency, maximum throughput,
memory and CPU under load, start to ready. The load tool runs in the client's
namespace (the bench client, or the meshlet client pod), pinned to the client CPUs.
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from bench.load import (
    ClosedLoop,
    FixedRate,
    LoadError,
    combine_closed,
    combine_fixed,
    oha_cmd,
    parse_oha,
    parse_wrk,
    wrk_cmd,
)
from bench.model import PeerResult, SidecarStats
from bench.peers import BenchEnv, Peer, RunningPeer
from bench.procs import RssPeaks, http_get_status, pinned, tree_cpu_seconds, tree_rss

MB = 1024 * 1024
VERIFY_TIMEOUT = 30.0


class Logger(Protocol):
    def __call__(self, message: str) -> None: ...


class VerifyError(RuntimeError):
    """Requests through the peer do not succeed, so measuring it is pointless."""


@dataclass(frozen=True)
class LoadPlan:
    rates: tuple[int, ...] = (500, 2000)
    seconds: int = 4
    """Length of one run; each (peer, rate) gets `rounds` runs."""
    rounds: int = 3
    warmup_seconds: int = 2
    connections: int = 32
    wrk_connections: int = 32
    idle_settle_seconds: float = 1.0


def _client_netns(env: BenchEnv, running: RunningPeer) -> str:
    return running.client_netns or env.topo.client.netns


def _load(env: BenchEnv, netns: str, argv: list[str], timeout: float) -> str:
    cmd = pinned(argv, netns=netns, cpus=env.client_cpus, nice=env.nice)
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, text=True, timeout=timeout)
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


@dataclass
class _Live:
    """A started, verified peer and what its runs have collected so far."""

    peer: Peer
    running: RunningPeer
    idle: dict[str, int]
    rss: RssPeaks
    fixed: dict[int, list[FixedRate]] = field(default_factory=dict)
    closed: list[ClosedLoop] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU time per sidecar during the runs at the highest rate."""
    cpu_requests: int = 0
    error: str | None = None

    @property
    def name(self) -> str:
        return self.peer.name


def _error(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"


def _start(env: BenchEnv, peer: Peer, plan: LoadPlan, stack: ExitStack, log: Logger) -> _Live:
    """Start and verify one peer; its teardown joins `stack` only once it works."""
    own = ExitStack()
    try:
        log(f"[{peer.name}] starting")
        running = own.enter_context(peer.start(env))
        for s in running.sidecars:
            ready = "later" if s.start_to_ready_ms is None else f"{s.start_to_ready_ms:.0f} ms"
            log(f"[{peer.name}] {s.side}-side up (pid {s.pid}), start to ready: {ready}")
        verify(env, running)
    except BaseException:
        own.close()
        raise
    stack.enter_context(own)
    time.sleep(plan.idle_settle_seconds)
    idle = {s.side: tree_rss(s.pid) for s in running.sidecars}
    return _Live(peer=peer, running=running, idle=idle, rss=RssPeaks({s.side: s.pid for s in running.sidecars}))


def _rotated(items: list[_Live], shift: int) -> list[_Live]:
    live = [x for x in items if x.error is None]
    if not live:
        return []
    k = shift % len(live)
    return live[k:] + live[:k]


def _one_fixed(env: BenchEnv, live: _Live, oha: Path, plan: LoadPlan, rate: int, log: Logger) -> None:
    sidecars = live.running.sidecars
    before = {s.side: tree_cpu_seconds(s.pid) for s in sidecars}
    with live.rss:
        result = fixed_rate(env, live.running, oha, rate, plan.seconds, plan.connections)
    if rate == max(plan.rates):
        for s in sidecars:
            live.cpu_seconds[s.side] = live.cpu_seconds.get(s.side, 0.0) + tree_cpu_seconds(s.pid) - before[s.side]
        live.cpu_requests += result.requests
    live.fixed.setdefault(rate, []).append(result)
    log(f"[{live.name}] {rate} req/s: p50 {result.p50_ms:.3f} p99 {result.p99_ms:.3f} "
        f"p99.9 {result.p999_ms:.3f} ms, achieved {result.achieved_rps:.0f}/s")


def _one_closed(env: BenchEnv, live: _Live, plan: LoadPlan, log: Logger) -> None:
    with live.rss:
        result = closed_loop(env, live.running, plan.seconds, plan.wrk_connections)
    live.closed.append(result)
    log(f"[{live.name}] closed loop: {result.rps:.0f} req/s, p99 {result.p99_ms:.3f} ms")


def _finish(live: _Live, log: Logger) -> PeerResult:
    """Checks and timings done after the load (they may restart the peer's processes)."""
    note = getattr(live.peer, "note", "")
    mtls_seen = getattr(live.peer, "mtls_seen", None)
    if mtls_seen is not None:
        seen = mtls_seen()
        if seen is False:
            note += "; WARNING: the server proxy's metrics show no inbound request with tls=\"true\""
        elif seen:
            note += "; mTLS confirmed by the server proxy's metrics (inbound tls=\"true\")"
    ready_ms: dict[str, float | None] = {s.side: s.start_to_ready_ms for s in live.running.sidecars}
    restart_timer = getattr(live.peer, "restart_to_ready_ms", None)
    if restart_timer is not None and live.error is None:
        for side in list(ready_ms):
            try:
                ready_ms[side] = restart_timer(side)
                log(f"[{live.name}] {side}-side proxy restart: start to ready {ready_ms[side]:.0f} ms")
            except Exception as exc:  # noqa: BLE001 - boundary: the other numbers stay valid
                ready_ms[side] = None
                note += f"; start to ready of the {side} side not measured ({_error(exc)})"
    sidecars = tuple(
        SidecarStats(side=s.side, start_to_ready_ms=ready_ms[s.side], rss_idle_mb=live.idle[s.side] / MB,
                     rss_load_mb=max(live.rss.peaks[s.side], live.idle[s.side]) / MB,
                     cpu_us_per_request=(live.cpu_seconds[s.side] / live.cpu_requests * 1e6
                                         if live.cpu_requests and s.side in live.cpu_seconds else None))
        for s in live.running.sidecars
    )
    return PeerResult(
        name=live.name,
        fixed=tuple(combine_fixed(live.fixed[r]) for r in sorted(live.fixed)),
        closed=combine_closed(live.closed) if live.closed else None,
        sidecars=sidecars, error=live.error, note=note.lstrip("; "),
    )


def measure_all(env: BenchEnv, peers: list[Peer], oha: Path, plan: LoadPlan, log: Logger) -> list[PeerResult]:
    """Start every peer, then run the load interleaved: each round visits every peer once
    (in a rotated order), so a burst of outside load hits all peers alike. A peer that
    fails is reported with its error; the others go on."""
    failed: dict[str, PeerResult] = {}
    lives: list[_Live] = []
    with ExitStack() as stack:
        for peer in peers:
            try:
                lives.append(_start(env, peer, plan, stack, log))
            except Exception as exc:  # noqa: BLE001 - boundary: one broken peer must not hide the others
                log(f"[{peer.name}] FAILED to start: {exc}")
                failed[peer.name] = PeerResult(name=peer.name, error=_error(exc), note=getattr(peer, "note", ""))

        def each(shift: int, fn: Callable[[_Live], None]) -> None:
            for live in _rotated(lives, shift):
                try:
                    fn(live)
                except Exception as exc:  # noqa: BLE001 - boundary: the peer is dropped, the others go on
                    log(f"[{live.name}] FAILED: {exc}")
                    live.error = _error(exc)

        if plan.warmup_seconds:
            warm = LoadPlan(rates=plan.rates, seconds=plan.warmup_seconds, connections=plan.connections)
            each(0, lambda live: fixed_rate(env, live.running, oha, plan.rates[0], warm.seconds, warm.connections))
        for rate in plan.rates:
            for rnd in range(plan.rounds):
                each(rnd, lambda live: _one_fixed(env, live, oha, plan, rate, log))  # noqa: B023
        for rnd in range(plan.rounds):
            each(rnd, lambda live: _one_closed(env, live, plan, log))
        finished = {live.name: _finish(live, log) for live in lives}
    return [finished.get(p.name) or failed[p.name] for p in peers]
