"""Tables of the suites beyond HTTP/1 (pure): HTTP/2, gRPC, the route table and retries, and the
route-selection micro-benchmark. bench.report puts them after the HTTP/1 tables."""
from __future__ import annotations

from bench.model import PeerResult, RunResult

FELL_BEHIND = 0.95

PROTOCOL_HEAD = ["peer", "rate", "achieved", "p50 ms", "p99 ms", "p99.9 ms", "+p50", "+p99", "max req/s",
                 "max vs direct", "max p50 ms", "max p99 ms", "errors"]
ROUTES_HEAD = ["meshlet pair", "achieved", "p50 ms", "p99 ms", "+p50 vs plain", "+p99 vs plain", "max req/s",
               "max vs plain", "CPU µs/req client", "CPU µs/req server", "failed requests"]
SELECTION_HEAD = ["services loaded", "services requested", "route table", "CPU µs/request"]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def suite_peers(run: RunResult, suite: str) -> list[PeerResult]:
    return [p for p in run.peers if p.suite == suite]


def baseline(run: RunResult, peer: PeerResult) -> PeerResult | None:
    """The direct connection a row is compared with: its suite's, else the HTTP/1 one."""
    return run.peer("direct", peer.suite) or run.peer("direct")


def _errors(peer: PeerResult) -> int:
    return sum(sum(f.errors.values()) for f in peer.fixed) + (peer.closed.errors if peer.closed else 0)


def _requests(peer: PeerResult) -> int:
    return sum(f.requests for f in peer.fixed) + (peer.closed.requests if peer.closed else 0)


def protocol_rows(run: RunResult, suite: str) -> list[list[str]]:
    """Fixed-rate latency and closed-loop maximum of one protocol suite (h2, grpc)."""
    rows = []
    for peer in suite_peers(run, suite):
        base = baseline(run, peer)
        c = peer.closed
        base_max = base.closed.rps if base and base.closed else None
        share = f"{c.rps / base_max * 100:.0f} %" if c and base_max else "–"
        fixed = peer.fixed or ()
        for f in fixed or (None,):
            b = base.at_rate(f.rate) if base and f else None
            a50 = f.p50_ms - b.p50_ms if f and b and peer is not base else None
            a99 = f.p99_ms - b.p99_ms if f and b and peer is not base else None
            achieved = "–" if f is None else (f"{f.achieved_rps:.0f}"
                                             + (" (behind)" if f.achieved_rps < FELL_BEHIND * f.rate else ""))
            rows.append([peer.name, str(f.rate) if f else "–", achieved, _fmt(f and f.p50_ms, 3),
                         _fmt(f and f.p99_ms, 3), _fmt(f and f.p999_ms, 3), _fmt(a50, 3), _fmt(a99, 3),
                         f"{c.rps:.0f}" if c else "–", share, _fmt(c and c.p50_ms, 3), _fmt(c and c.p99_ms, 3),
                         str(_errors(peer))])
    return rows


def _cpu(peer: PeerResult, side: str, rate: int | None) -> float | None:
    return next((s.cpu_us_by_rate.get(rate) for s in peer.sidecars if s.side == side), None) if rate else None


def routes_rows(run: RunResult) -> list[list[str]]:
    """The plain meshlet pair, then each routes-suite row compared with it at the lowest shared rate."""
    plain = run.peer("meshlet")
    variants = suite_peers(run, "routes")
    if not variants:
        return []
    rate = min((f.rate for p in variants for f in p.fixed), default=None)
    rows = []
    for peer in ([plain] if plain else []) + variants:
        f = peer.at_rate(rate) if rate is not None else None
        base = plain.at_rate(rate) if plain and rate is not None else None
        a50 = f.p50_ms - base.p50_ms if f and base and peer is not plain else None
        a99 = f.p99_ms - base.p99_ms if f and base and peer is not plain else None
        c = peer.closed
        share = (f"{c.rps / plain.closed.rps * 100:.0f} %" if c and plain and plain.closed and plain.closed.rps
                 and peer is not plain else "–")
        name = "meshlet (no VirtualService)" if peer is plain else peer.name.removeprefix("meshlet").strip() or peer.name
        failed = _errors(peer)
        total = _requests(peer)
        failed_text = f"{failed} of {total}" + (f" ({failed / total * 100:.1f} %)" if total and failed else "")
        achieved = "–" if f is None else f"{f.achieved_rps:.0f}/{f.rate}"
        rows.append([name, achieved, _fmt(f and f.p50_ms, 3), _fmt(f and f.p99_ms, 3), _fmt(a50, 3), _fmt(a99, 3),
                     f"{c.rps:.0f}" if c else "–", share, _fmt(_cpu(peer, "client", rate), 1), _fmt(_cpu(peer, "server", rate), 1),
                     failed_text])
    return rows


def selection_rows(run: RunResult) -> list[list[str]]:
    return [[f"{r.services:,}", f"{r.spread:,}", r.table, f"{r.ns_per_request / 1000:.2f}"] for r in run.selection]


def failures(run: RunResult, suite: str) -> list[str]:
    return [f"{p.suite}/{p.name}: {p.error}" for p in suite_peers(run, suite) if p.error]
