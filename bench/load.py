"""Load generators: oha at a fixed rate (coordinated omission corrected) and wrk
closed loop for maximum throughput. Command building and output parsing are pure.
"""
from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ABORTED_AT_END = "aborted due to deadline"


class LoadError(RuntimeError):
    """A load tool failed or printed something we cannot read."""


@dataclass(frozen=True)
class FixedRate:
    """One open-loop run at `rate` requests/s (latencies in milliseconds)."""

    rate: int
    requests: int
    achieved_rps: float
    success_rate: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    errors: dict[str, int]


@dataclass(frozen=True)
class ClosedLoop:
    """One wrk run: as fast as `connections` keep-alive connections go."""

    connections: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass(frozen=True)
class RequestSpec:
    """What every request of a peer looks like (the same for oha, wrk and h2load)."""

    http2: bool = False
    """h2c with prior knowledge (oha --http2, h2load) instead of HTTP/1.1."""
    headers: tuple[str, ...] = ()
    """Extra request headers, "name: value"."""
    body: Path | None = None
    """POST this file's bytes (gRPC: one framed message)."""

    @property
    def kind(self) -> str:
        return "h2" if self.http2 else "http1"


PLAIN_GET = RequestSpec()
"""HTTP/1.1 GET without extra headers (the original suite)."""


def _request_args(flag_body: str, spec: RequestSpec) -> list[str]:
    out: list[str] = []
    for h in spec.headers:
        out += ["-H", h]
    if spec.body is not None:
        out += [flag_body, str(spec.body)]
    return out


def oha_cmd(oha: Path, url: str, *, rate: int, seconds: int, connections: int,
            spec: RequestSpec = PLAIN_GET) -> list[str]:
    argv = [
        str(oha), "--no-tui", "--output-format", "json",
        "-z", f"{seconds}s", "-q", str(rate), "--latency-correction",
        "-c", str(connections), "--disable-compression",
    ]
    if spec.http2:
        argv.append("--http2")
    if spec.body is not None:
        argv += ["-m", "POST"]
    return [*argv, *_request_args("-D", spec), url]


def parse_oha(rate: int, text: str) -> FixedRate:
    try:
        doc = json.loads(text)
        summary = doc["summary"]
        pct = doc["latencyPercentiles"]
        statuses = {str(k): int(v) for k, v in (doc.get("statusCodeDistribution") or {}).items()}
        # Requests still in flight when the duration ends are cut off by oha: not the peer's fault.
        errors = {str(k): int(v) for k, v in (doc.get("errorDistribution") or {}).items()
                  if str(k) != ABORTED_AT_END}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LoadError(f"cannot read oha's JSON output ({exc!r}): {text[:300]!r}") from exc
    non_200 = {f"HTTP {k}": v for k, v in statuses.items() if k != "200"}

    def ms(key: str) -> float:
        value = pct.get(key)
        if value is None:
            raise LoadError(f"oha reported no {key} latency (no successful request?)")
        return float(value) * 1000.0

    return FixedRate(
        rate=rate,
        requests=sum(statuses.values()),
        achieved_rps=float(summary.get("requestsPerSec") or 0.0),
        success_rate=float(summary.get("successRate") or 0.0),
        p50_ms=ms("p50"), p99_ms=ms("p99"), p999_ms=ms("p99.9"),
        errors={**errors, **non_200},
    )


def wrk_cmd(url: str, *, seconds: int, connections: int, threads: int = 1,
            spec: RequestSpec = PLAIN_GET) -> list[str]:
    if spec.http2 or spec.body is not None:
        raise ValueError("wrk runs only HTTP/1.1 GETs; use h2load for HTTP/2 and gRPC")
    return ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *_request_args("", spec), url]


def h2load_cmd(url: str, *, seconds: int, connections: int, log_file: Path, spec: RequestSpec) -> list[str]:
    """Closed loop over h2c (prior knowledge): `connections` clients, one stream each."""
    return ["h2load", "-t1", f"-c{connections}", "-m1", f"-D{seconds}", "--warm-up-time=1",
            f"--log-file={log_file}", *_request_args("-d", spec), url]


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def parse_h2load(connections: int, text: str, log: str) -> ClosedLoop:
    """h2load's summary (req/s, failures) and its per-request log (status, duration µs) for percentiles."""
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (rps and counts and codes):
        raise LoadError(f"cannot read h2load output: {text[-400:]!r}")
    durations: list[float] = []
    for line in log.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1].strip().isdigit() and fields[2].strip().isdigit():
            durations.append(int(fields[2]) / 1000.0)
    if not durations:
        raise LoadError("h2load logged no request (nothing answered?)")
    durations.sort()
    errors = int(counts.group(4)) + int(counts.group(5)) + int(codes.group(3)) + int(codes.group(4))
    return ClosedLoop(connections=connections, requests=int(counts.group(2)), rps=float(rps.group(1)),
                      p50_ms=_percentile(durations, 0.5), p99_ms=_percentile(durations, 0.99), errors=errors)


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _wrk_duration_ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        raise LoadError(f"unexpected wrk latency value {value!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(connections: int, text: str) -> ClosedLoop:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", text, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.MULTILINE)
    if not (rps and total and p50 and p99):
        raise LoadError(f"cannot read wrk output: {text[-400:]!r}")
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        errors += int(non2xx.group(1))
    return ClosedLoop(
        connections=connections, requests=int(total.group(1)), rps=float(rps.group(1)),
        p50_ms=_wrk_duration_ms(p50.group(1)), p99_ms=_wrk_duration_ms(p99.group(1)), errors=errors,
    )


def combine_fixed(runs: list[FixedRate]) -> FixedRate:
    """Rounds of one rate as one result: the median of each percentile, summed counts."""
    if not runs:
        raise ValueError("no runs to combine")
    med = lambda attr: statistics.median(getattr(r, attr) for r in runs)
    errors: Counter[str] = Counter()
    for r in runs:
        errors.update(r.errors)
    return FixedRate(rate=runs[0].rate, requests=sum(r.requests for r in runs),
                     achieved_rps=statistics.fmean(r.achieved_rps for r in runs),
                     success_rate=statistics.fmean(r.success_rate for r in runs),
                     p50_ms=med("p50_ms"), p99_ms=med("p99_ms"), p999_ms=med("p999_ms"), errors=dict(errors))


def combine_closed(runs: list[ClosedLoop]) -> ClosedLoop:
    if not runs:
        raise ValueError("no runs to combine")
    med = lambda attr: statistics.median(getattr(r, attr) for r in runs)
    return ClosedLoop(connections=runs[0].connections, requests=sum(r.requests for r in runs), rps=med("rps"),
                      p50_ms=med("p50_ms"), p99_ms=med("p99_ms"), errors=sum(r.errors for r in runs))
