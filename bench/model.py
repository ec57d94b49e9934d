"""Results of one benchmark run, as frozen dataclasses with a JSON round trip."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from bench.load import ClosedLoop, FixedRate
from bench.routebench import SelectionResult


@dataclass(frozen=True)
class SidecarStats:
    side: str
    start_to_ready_ms: float | None
    rss_idle_mb: float
    rss_load_mb: float
    """Peak RSS sampled during the fixed-rate and closed-loop runs."""
    cpu_us_per_request: float | None
    """CPU time (user+system) per request during the highest fixed-rate run."""
    cpu_us_by_rate: dict[int, float] = dataclasses.field(default_factory=dict)
    """CPU time per request at each fixed rate."""


@dataclass(frozen=True)
class PeerResult:
    name: str
    suite: str = "http1"
    """Which comparison the row belongs to: http1, routes, h2, grpc (the baseline is that suite's direct)."""
    fixed: tuple[FixedRate, ...] = ()
    closed: ClosedLoop | None = None
    sidecars: tuple[SidecarStats, ...] = ()
    error: str | None = None
    """Why this peer could not be measured (the others still are)."""
    note: str = ""

    def at_rate(self, rate: int) -> FixedRate | None:
        return next((f for f in self.fixed if f.rate == rate), None)


@dataclass(frozen=True)
class Machine:
    nproc: int
    cpu_model: str
    kernel: str
    python: str
    tools: dict[str, str]


@dataclass(frozen=True)
class Settings:
    rates: tuple[int, ...]
    seconds: int
    """Length of one run."""
    rounds: int
    """Runs per (peer, rate), interleaved across peers; percentiles are the median of the rounds."""
    warmup_seconds: int
    connections: int
    """oha connections at fixed rate."""
    wrk_connections: int
    client_cpus: str
    server_cpus: str
    server: str
    """What answers the requests."""
    nice: int = 0
    """Nice value of all measured processes (0: same priority as everything else on the machine)."""
    suite_rates: str = ""
    """Fixed rates of the suites beyond HTTP/1, as text ("routes 500, h2 200, grpc 100")."""


@dataclass(frozen=True)
class RunResult:
    date: str
    command: str
    machine: Machine
    settings: Settings
    peers: tuple[PeerResult, ...]
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """The machine's load average (1, 5, 15 min) when the run started and ended: other work on it."""
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    suites: tuple[str, ...] = ("http1",)
    selection: tuple[SelectionResult, ...] = ()
    """The route-selection micro-benchmark (routes suite)."""

    def peer(self, name: str, suite: str = "http1") -> PeerResult | None:
        return next((p for p in self.peers if p.name == name and p.suite == suite), None)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunResult:
        doc: dict[str, Any] = json.loads(text)
        peers = tuple(
            PeerResult(
                name=p["name"], suite=p.get("suite", "http1"),
                fixed=tuple(FixedRate(**f) for f in p["fixed"]),
                closed=ClosedLoop(**p["closed"]) if p.get("closed") else None,
                sidecars=tuple(SidecarStats(**{**s, "cpu_us_by_rate": {int(k): v for k, v in
                                                                        s.get("cpu_us_by_rate", {}).items()}})
                               for s in p["sidecars"]),
                error=p.get("error"),
                note=p.get("note", ""),
            )
            for p in doc["peers"]
        )
        settings = dict(doc["settings"])
        settings["rates"] = tuple(settings["rates"])
        return cls(date=doc["date"], command=doc["command"], machine=Machine(**doc["machine"]),
                   settings=Settings(**settings), peers=peers,
                   load_before=tuple(doc.get("load_before", (0.0, 0.0, 0.0))),  # type: ignore[arg-type]
                   load_after=tuple(doc.get("load_after", (0.0, 0.0, 0.0))),  # type: ignore[arg-type]
                   suites=tuple(doc.get("suites", ("http1",))),
                   selection=tuple(SelectionResult(**r) for r in doc.get("selection", ())))
