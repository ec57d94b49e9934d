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
    RequestSpec,
    combine_closed,
    combine_fixed,
    h2load_cmd,
    oha_cmd,
    parse_h2load,
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
    suite_rates: tuple[tuple[str, tuple[int, ...]], ...] = ()
    """Fixed rates of the other suites (routes, h2, grpc); a suite not listed: the lowest of `rates`."""

    def rates_of(self, suite: str) -> tuple[int, ...]:
        if suite == "http1":
            return self.rates
        return dict(self.suite_rates).get(suite) or (min(self.rates),)


def suite_of(peer: object) -> str:
    return str(getattr(peer, "suite", "http1"))


def label(peer: object) -> str:
    """How logs and results name a peer: `meshlet`, `h2/meshlet`, `routes/meshlet+vs10`."""
    suite = suite_of(peer)
    name = str(getattr(peer, "name", "?"))
    return name if suite == "http1" else f"{suite}/{name}"


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


def curl_status(netns: str, url: str, spec: RequestSpec) -> int | None:
    """Status of one request shaped like the load's (headers, h2c), made with curl inside `netns`."""
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3"]
    if spec.http2:
        argv.append("--http2-prior-knowledge")
    for h in spec.headers:
        argv += ["-H", h]
    try:
        proc = subprocess.run(["ip", "netns", "exec", netns, *argv, url], capture_output=True, check=False,
                              text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    return int(proc.stdout) if proc.stdout.strip().isdigit() and proc.stdout != "000" else None


def verify(env: BenchEnv, running: RunningPeer) -> None:
    """Poll until one request through the peer succeeds (discovery may still be settling): a GET
    returning 200, or for gRPC a real echo call returning grpc-status 0."""
    url = urlsplit(running.url)
    host, port = url.hostname or "", url.port or 80
    netns = _client_netns(env, running)
    worker = env.worker(netns)
    spec = running.request
    deadline = time.monotonic() + VERIFY_TIMEOUT
    status: int | None = None
    while time.monotonic() < deadline:
        if running.grpc:
            from bench.grpc_echo import call_status

            status = worker.call(call_status, host, port)
            if status == 0:
                return
        else:
            plain = not spec.http2 and not spec.headers
            status = (worker.call(http_get_status, host, port, url.path or "/") if plain
                      else curl_status(netns, running.url, spec))
            if status == 200:
                return
        time.sleep(0.05)
    what = "grpc-status 0" if running.grpc else "200"
    raise VerifyError(f"{running.url} through {running.name} never returned {what} (last: {status})")


def fixed_rate(env: BenchEnv, running: RunningPeer, oha: Path, rate: int, seconds: int,
               connections: int) -> FixedRate:
    argv = oha_cmd(oha, running.url, rate=rate, seconds=seconds, connections=connections, spec=running.request)
    return parse_oha(rate, _load(env, _client_netns(env, running), argv, timeout=seconds + 60))


def closed_loop(env: BenchEnv, running: RunningPeer, seconds: int, connections: int) -> ClosedLoop:
    """wrk for HTTP/1.1, h2load (per-request log for the percentiles) for h2c and gRPC."""
    netns = _client_netns(env, running)
    if not running.request.http2:
        argv = wrk_cmd(running.url, seconds=seconds, connections=connections, spec=running.request)
        return parse_wrk(connections, _load(env, netns, argv, timeout=seconds + 60))
    log_file = env.workdir / "h2load.log"
    log_file.unlink(missing_ok=True)
    argv = h2load_cmd(running.url, seconds=seconds, connections=connections, log_file=log_file, spec=running.request)
    out = _load(env, netns, argv, timeout=seconds + 60)
    try:
        log = log_file.read_text()
    except OSError as exc:
        raise LoadError(f"h2load wrote no log: {exc}") from exc
    return parse_h2load(connections, out, log)


@dataclass
class _Live:
    """A started, verified peer and what its runs have collected so far."""

    peer: Peer
    running: RunningPeer
    idle: dict[str, int]
    rss: RssPeaks
    fixed: dict[int, list[FixedRate]] = field(default_factory=dict)
    closed: list[ClosedLoop] = field(default_factory=list)
    cpu_seconds: dict[tuple[str, int], float] = field(default_factory=dict)
    """CPU time per (sidecar, rate) during the fixed-rate runs."""
    cpu_requests: dict[int, int] = field(default_factory=dict)
    error: str | None = None
    rates: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return label(self.peer)


def _error(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"


def _start(env: BenchEnv, peer: Peer, plan: LoadPlan, stack: ExitStack, log: Logger) -> _Live:
    """Start and verify one peer; its teardown joins `stack` only once it works."""
    own = ExitStack()
    try:
        log(f"[{label(peer)}] starting")
        running = own.enter_context(peer.start(env))
        for s in running.sidecars:
            ready = "later" if s.start_to_ready_ms is None else f"{s.start_to_ready_ms:.0f} ms"
            log(f"[{label(peer)}] {s.side}-side up (pid {s.pid}), start to ready: {ready}")
        verify(env, running)
    except BaseException:
        own.close()
        raise
    stack.enter_context(own)
    time.sleep(plan.idle_settle_seconds)
    idle = {s.side: tree_rss(s.pid) for s in running.sidecars}
    return _Live(peer=peer, running=running, idle=idle, rss=RssPeaks({s.side: s.pid for s in running.sidecars}),
                 rates=plan.rates_of(suite_of(peer)))


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
    for s in sidecars:
        key = (s.side, rate)
        live.cpu_seconds[key] = live.cpu_seconds.get(key, 0.0) + tree_cpu_seconds(s.pid) - before[s.side]
    live.cpu_requests[rate] = live.cpu_requests.get(rate, 0) + result.requests
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
    def cpu_us(side: str, rate: int) -> float | None:
        n = live.cpu_requests.get(rate, 0)
        return live.cpu_seconds[(side, rate)] / n * 1e6 if n and (side, rate) in live.cpu_seconds else None

    top = max(live.rates, default=0)
    sidecars = tuple(
        SidecarStats(side=s.side, start_to_ready_ms=ready_ms[s.side], rss_idle_mb=live.idle[s.side] / MB,
                     rss_load_mb=max(live.rss.peaks[s.side], live.idle[s.side]) / MB,
                     cpu_us_per_request=cpu_us(s.side, top),
                     cpu_us_by_rate={r: v for r in live.rates if (v := cpu_us(s.side, r)) is not None})
        for s in live.running.sidecars
    )
    return PeerResult(
        name=live.peer.name, suite=suite_of(live.peer),
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
                log(f"[{label(peer)}] FAILED to start: {exc}")
                failed[label(peer)] = PeerResult(name=peer.name, suite=suite_of(peer), error=_error(exc),
                                                 note=getattr(peer, "note", ""))

        def each(shift: int, fn: Callable[[_Live], None], rate: int | None = None) -> None:
            for live in _rotated(lives, shift):
                if rate is not None and rate not in live.rates:
                    continue
                try:
                    fn(live)
                except Exception as exc:  # noqa: BLE001 - boundary: the peer is dropped, the others go on
                    log(f"[{live.name}] FAILED: {exc}")
                    live.error = _error(exc)

        if plan.warmup_seconds:
            warm = LoadPlan(rates=plan.rates, seconds=plan.warmup_seconds, connections=plan.connections)
            each(0, lambda live: fixed_rate(env, live.running, oha, live.rates[0], warm.seconds, warm.connections))
        all_rates = sorted({r for live in lives for r in live.rates})
        for rate in all_rates:
            for rnd in range(plan.rounds):
                each(rnd, lambda live: _one_fixed(env, live, oha, plan, rate, log), rate)  # noqa: B023
        for rnd in range(plan.rounds):
            each(rnd, lambda live: _one_closed(env, live, plan, log))
        finished = {live.name: _finish(live, log) for live in lives}
    return [finished.get(label(p)) or failed[label(p)] for p in peers]
