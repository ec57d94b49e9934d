"""Micro-benchmark of the proxy's per-request route selection, with 1 vs 1,000 services' profiles loaded.

Pure code, no sockets: the proxy's own `Profiles` table (meshlet.proxy.profiles, without a
control plane) holds one compiled `Profile` per service; each request does what
`OutboundRouter._decide` does before choosing an endpoint: look the target's profile up by
authority, build the `RequestView` (only the header values some route looks at) and `select`
the route. Two route tables per service: the 10-rule VirtualService of the routes suite (the
request matches the last rule, so every rule's regex and header matches run) and the single
default route destination sends for a Service without VirtualService. Requests cycle over all
loaded services or hit one of them (`spread`), which separates the size of the table
(does selection grow with it?) from touching many services' objects in turn (CPU caches). Timed in CPU time of the thread
(`thread_time_ns`, so time slices lost to other work on a shared machine do not count) over
batches; the figure is the median batch's CPU time per request.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

CASES = ((1, 1), (1000, 1), (1000, 1000))
"""(services loaded, services the requests cycle over)."""
RULES = 10


@dataclass(frozen=True)
class SelectionResult:
    services: int
    spread: int
    """How many of the loaded services the requests cycle over."""
    table: str
    """"10 rules (last matches)" or "default route"."""
    ns_per_request: float
    requests: int


def _profile_message(host: str, rules: int) -> Any:
    from meshlet.api import destination_pb as pb

    authority = f"{host}.bench.svc.cluster.local:8080"
    if rules == 0:
        routes = [pb.Route(name="default", backends=[pb.WeightedDst(authority=authority, weight=100)])]
    else:
        routes = [
            pb.Route(name=f"rule-{i}", backends=[pb.WeightedDst(authority=authority, weight=100)], matches=[
                pb.RequestMatch(path=pb.StringMatch(regex="/api/v[0-9]+/orders/[0-9]+"),
                                headers=[pb.HeaderMatch(name="x-bench-route", value=pb.StringMatch(exact=f"rule-{i}"))]),
                pb.RequestMatch(headers=[pb.HeaderMatch(name="x-bench-user",
                                                        value=pb.StringMatch(regex=f"tenant-{i}-[a-z0-9]+"))]),
            ])
            for i in range(rules)
        ]
    return pb.DestinationProfile(fully_qualified_name=f"{host}.bench.svc.cluster.local", routes=routes)


def _head(host: str) -> Any:
    from meshlet.proxy.http1 import RequestHead

    headers = [(b"host", f"{host}:8080".encode()), (b"user-agent", b"bench"), (b"accept", b"*/*"),
               (b"x-bench-route", f"rule-{RULES - 1}".encode()), (b"x-bench-user", b"user-42")]
    return RequestHead(method=b"GET", target=b"/api/v1/orders/42", version="1.1", headers=headers, keep_alive=True,
                       upgrade=False, chunked=False, host=f"{host}:8080".encode())


def selection_time(services: int, rules: int, requests: int = 10000, batches: int = 5,
                   spread: int | None = None) -> SelectionResult:
    """Per-request selection CPU time with `services` profiles loaded, requests cycling over the
    first `spread` of them (default: all); `rules`=0: the default route."""
    spread = services if spread is None else max(1, min(spread, services))
    import structlog
    from meshlet.proxy.config import ProxyConfig
    from meshlet.proxy.profile import compile_profile
    from meshlet.proxy.profiles import Profiles
    from meshlet.proxy.routes import RequestView, select

    profiles = Profiles(ProxyConfig(max_targets=max(1000, services)), structlog.get_logger())
    hosts = [f"svc-{i}" for i in range(services)]
    for host in hosts:
        profiles.get(f"{host}:8080").profile = compile_profile(_profile_message(host, rules), {}, "bench")
    work = [(f"{h}:8080", _head(h)) for h in hosts[:spread]]
    expected = f"rule-{RULES - 1}" if rules else "default"
    per_batch: list[float] = []
    for _ in range(batches):
        started = time.thread_time_ns()
        for i in range(requests):
            authority, head = work[i % spread]
            prof = profiles.get(authority).profile
            sel = select(prof, RequestView(head, authority, 8080, prof.header_names))
            if sel is None or sel[0].name != expected:
                raise AssertionError(f"selected {sel and sel[0].name!r}, wanted {expected!r}")
        per_batch.append((time.thread_time_ns() - started) / requests)
    table = f"{rules} rules (last matches)" if rules else "default route"
    return SelectionResult(services=services, spread=spread, table=table, ns_per_request=statistics.median(per_batch),
                           requests=requests * batches)


def run_all(cases: tuple[tuple[int, int], ...] = CASES, requests: int = 10000) -> tuple[SelectionResult, ...]:
    return tuple(selection_time(n, rules, requests, spread=k) for rules in (RULES, 0) for n, k in cases)


if __name__ == "__main__":
    for r in run_all():
        print(f"{r.services:>5} loaded, {r.spread:>5} requested, {r.table:<24} "
              f"{r.ns_per_request / 1000:.2f} µs/request")
