"""`linkerd viz stat`-style numbers from two scrapes of proxies' Prometheus metrics (pure code).

A `ProxyCounters` is what one scrape of one proxy says about its *inbound*
side: responses by classification, the latency histogram (buckets summed over
all other labels) and open inbound TCP connections. `delta` subtracts two
scrapes (a counter that went down means the proxy restarted: the later value
counts from zero), `histogram_quantile` interpolates as Prometheus does, and
`workload_stats` / `render_table` produce the per-workload table.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

INF = math.inf


class MetricsParseError(ValueError):
    """A metrics page is not valid Prometheus text exposition."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse_samples(text: str) -> list[Sample]:
    try:
        return [
            Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise MetricsParseError(f"not Prometheus text format: {exc}") from exc


@dataclass(frozen=True)
class ProxyCounters:
    """Inbound totals of one proxy at one instant."""

    success: float = 0.0
    failure: float = 0.0
    buckets: Mapping[float, float] = field(default_factory=dict)
    """Cumulative latency histogram: upper bound (ms, `INF` for +Inf) -> count."""
    tcp_open: float | None = None
    tls_requests: float = 0.0
    """Inbound request_total with tls="true"."""
    requests: float = 0.0
    """All inbound request_total."""

    @property
    def total(self) -> float:
        return self.success + self.failure


def _parse_le(text: str) -> float:
    return INF if text in ("+Inf", "Inf", "inf") else float(text)


def inbound_counters(samples: Iterable[Sample], direction: str = "inbound") -> ProxyCounters:
    success = failure = tls = requests = 0.0
    tcp_open: float | None = None
    buckets: dict[float, float] = {}
    for s in samples:
        if s.labels.get("direction") != direction:
            continue
        if s.name == "response_total":
            if s.labels.get("classification") == "success":
                success += s.value
            else:
                failure += s.value
        elif s.name == "response_latency_ms_bucket" and "le" in s.labels:
            le = _parse_le(s.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + s.value
        elif s.name == "request_total":
            requests += s.value
            if s.labels.get("tls") == "true":
                tls += s.value
        elif s.name == "tcp_open_connections":
            tcp_open = (tcp_open or 0.0) + s.value
    return ProxyCounters(success=success, failure=failure, buckets=buckets, tcp_open=tcp_open,
                         tls_requests=tls, requests=requests)


def _sub(after: float, before: float) -> float:
    return after - before if after >= before else after


def delta(before: ProxyCounters, after: ProxyCounters) -> ProxyCounters:
    """What happened between two scrapes; the gauge (tcp_open) is taken from `after`."""
    return ProxyCounters(
        success=_sub(after.success, before.success),
        failure=_sub(after.failure, before.failure),
        buckets={le: _sub(v, before.buckets.get(le, 0.0)) for le, v in after.buckets.items()},
        tcp_open=after.tcp_open,
        tls_requests=_sub(after.tls_requests, before.tls_requests),
        requests=_sub(after.requests, before.requests),
    )


def merge(items: Iterable[ProxyCounters]) -> ProxyCounters:
    success = failure = tls = requests = 0.0
    tcp_open: float | None = None
    buckets: dict[float, float] = {}
    for c in items:
        success += c.success
        failure += c.failure
        tls += c.tls_requests
        requests += c.requests
        if c.tcp_open is not None:
            tcp_open = (tcp_open or 0.0) + c.tcp_open
        for le, v in c.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + v
    return ProxyCounters(success=success, failure=failure, buckets=buckets, tcp_open=tcp_open,
                         tls_requests=tls, requests=requests)


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' `histogram_quantile` over cumulative buckets; None when there are no observations.

    Linear interpolation inside the bucket holding the rank; the lowest bucket
    starts at 0 (if its upper bound is positive); a rank in the +Inf bucket
    yields the highest finite upper bound. Needs a +Inf bucket, like Prometheus.
    """
    if math.isnan(q):
        return None
    if q < 0:
        return -INF
    if q > 1:
        return INF
    bounds = sorted(buckets.items())
    if len(bounds) < 2 or bounds[-1][0] != INF:
        return None
    # Prometheus fixes non-monotonic buckets (a scrape racing observations) by
    # carrying the maximum forward.
    fixed: list[tuple[float, float]] = []
    running = 0.0
    for le, count in bounds:
        running = max(running, count)
        fixed.append((le, running))
    total = fixed[-1][1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, (_, count) in enumerate(fixed) if count >= rank)
    if index == len(fixed) - 1:
        return fixed[-2][0]
    upper, count = fixed[index]
    if index == 0 and upper <= 0:
        return upper
    lower, prev = (0.0, 0.0) if index == 0 else fixed[index - 1]
    if count == prev:
        return upper
    return lower + (upper - lower) * (rank - prev) / (count - prev)


@dataclass(frozen=True)
class WorkloadStat:
    """One row of the table. Values are None where the stat is unknown (no traffic, unmeshed),
    shown as `-` like `linkerd viz stat` does."""

    name: str
    meshed: int
    pods: int
    success_rate: float | None = None
    rps: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    tcp_conn: float | None = None
    tls_rate: float | None = None


def workload_stat(name: str, *, meshed: int, pods: int, window: ProxyCounters | None,
                  seconds: float) -> WorkloadStat:
    """Stats of one workload from the merged delta of its meshed pods over `seconds`."""
    if window is None or meshed == 0:
        return WorkloadStat(name=name, meshed=meshed, pods=pods)
    total = window.total
    return WorkloadStat(
        name=name,
        meshed=meshed,
        pods=pods,
        success_rate=(window.success / total) if total > 0 else None,
        rps=(total / seconds) if seconds > 0 and total > 0 else None,
        p50_ms=histogram_quantile(0.5, window.buckets),
        p95_ms=histogram_quantile(0.95, window.buckets),
        p99_ms=histogram_quantile(0.99, window.buckets),
        tcp_conn=window.tcp_open,
        tls_rate=(window.tls_requests / window.requests) if window.requests > 0 else None,
    )


HEADER = ("NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.1f}ms".replace(".0ms", "ms")
    return f"{value:.0f}ms"


def format_row(stat: WorkloadStat) -> tuple[str, ...]:
    return (
        stat.name,
        f"{stat.meshed}/{stat.pods}",
        "-" if stat.success_rate is None else f"{stat.success_rate * 100:.2f}%",
        "-" if stat.rps is None else f"{stat.rps:.1f}rps",
        _ms(stat.p50_ms),
        _ms(stat.p95_ms),
        _ms(stat.p99_ms),
        "-" if stat.tcp_conn is None else f"{stat.tcp_conn:.0f}",
    )


def render_table(stats: Sequence[WorkloadStat]) -> str:
    rows = [HEADER] + [format_row(s) for s in sorted(stats, key=lambda s: s.name)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(widths[i]) for i, cell in enumerate(row) if i]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
