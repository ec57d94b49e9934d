"""`python -m bench.run` (as root, from the repository root): the whole benchmark.

Creates the two namespaces, the throw-away PKI and the backend server, starts
every peer (direct, meshlet, nginx, haproxy), runs the load interleaved across
them (rounds; see bench.measure), prints the tables,
writes bench/results/<date>.json and regenerates the results section of
docs/benchmarks.md. A peer that fails is reported as such; the others still run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report, routebench
from bench.certs import generate
from bench.measure import LoadPlan, measure_all
from bench.model import RunResult, Settings
from bench.peers import BenchEnv, start_backend
from bench.procs import stop
from bench.stale import WORKDIR_PREFIX, BenchBusy, exclusive, stop_leftovers
from bench.suites import HTTP1_PEERS, SUITES, plan_peers
from bench.tools import find_oha, machine, require
from bench.topology import Topology, created

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
PEER_NAMES = HTTP1_PEERS
SERVER_DESCRIPTION = "nginx {version}, 1 worker, `return 200` of a 41-byte body from memory"


def _csv_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


DEFAULT_SUITE_RATES: tuple[tuple[str, tuple[int, ...]], ...] = (("routes", (500,)), ("h2", (200,)), ("grpc", (100,)))
"""Rates the meshlet pair sustains in each suite on the shared 2-core machine (the Python gRPC server
itself tops out at a few hundred calls/s)."""


def _suite_rates(text: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    out = dict(DEFAULT_SUITE_RATES)
    for item in (i.strip() for i in text.split(",") if i.strip()):
        suite, sep, rates = item.partition("=")
        if not sep or suite not in SUITES or suite == "http1":
            raise argparse.ArgumentTypeError(f"expected suite=rate[+rate...] with suite routes, h2 or grpc, got {item!r}")
        out[suite] = _csv_ints(rates.replace("+", ","))
    return tuple(out.items())


def _csv_suites(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in SUITES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown suite(s) {unknown}; choose from {', '.join(SUITES)}")
    return tuple(s for s in SUITES if s in names)


def _csv_peers(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in PEER_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {unknown}; choose from {', '.join(PEER_NAMES)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", type=_csv_suites, default=SUITES,
                    help=f"comma-separated suites to run, default: all ({','.join(SUITES)})")
    ap.add_argument("--peers", type=_csv_peers, default=PEER_NAMES,
                    help="peers of the http1 suite, comma-separated, default: all")
    ap.add_argument("--rates", type=_csv_ints, default=(500, 2000),
                    help="fixed rates in req/s of the http1 suite (default 500,2000)")
    ap.add_argument("--suite-rates", type=_suite_rates, default=DEFAULT_SUITE_RATES,
                    help="fixed rates of the other suites, e.g. routes=500,h2=200,grpc=100+200 (default: "
                         + ",".join(f"{k}={'+'.join(map(str, v))}" for k, v in DEFAULT_SUITE_RATES) + ")")
    ap.add_argument("--seconds", type=int, default=4, help="length of one run (default 4)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs per peer and rate, interleaved across peers (default 3)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds before the fixed-rate runs (default 2)")
    ap.add_argument("--connections", type=int, default=32, help="oha connections (default 32)")
    ap.add_argument("--wrk-connections", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--client-cpus", default="0", help="taskset list for load tool + client-side sidecar")
    ap.add_argument("--server-cpus", default="1", help="taskset list for server + server-side sidecar")
    ap.add_argument("--nice", type=int, default=0,
                    help="nice value for every measured process (e.g. -10 to run ahead of other work on a "
                         "shared machine; default 0)")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    ap.add_argument("--keep-workdir", action="store_true", help="keep configs and logs (printed path)")
    return ap.parse_args(argv)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, command: str) -> RunResult:
    require("ip", "taskset", "nginx", "haproxy", "wrk", *(("h2load", "curl") if {"h2", "grpc"} & set(args.suite)
                                                       else ()))
    oha = find_oha()
    mach = machine(oha)
    plan = LoadPlan(rates=args.rates, seconds=args.seconds, rounds=args.rounds, warmup_seconds=args.warmup,
                    connections=args.connections, wrk_connections=args.wrk_connections, suite_rates=args.suite_rates)
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    stale = stop_leftovers(workdir)
    if stale:
        log(f"stopped {len(stale)} leftover process(es) of an earlier, crashed run: {stale}")
    topo = Topology()
    load_before = os.getloadavg()
    with created(topo):
        env = BenchEnv(topo=topo, workdir=workdir, pki=generate(workdir / "pki"), client_cpus=args.client_cpus,
                       server_cpus=args.server_cpus, nice=args.nice)
        backend = start_backend(env)
        try:
            results = measure_all(env, plan_peers(args.suite, args.peers), oha, plan, log)
        finally:
            stop(backend)
            env.close_workers()
    if args.keep_workdir:
        log(f"configs and logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    selection: tuple[routebench.SelectionResult, ...] = ()
    if "routes" in args.suite:
        log("route selection micro-benchmark (1 vs 1000 services' profiles)")
        selection = routebench.run_all()
    settings = Settings(rates=plan.rates, seconds=plan.seconds, rounds=plan.rounds, warmup_seconds=plan.warmup_seconds,
                        connections=plan.connections, wrk_connections=plan.wrk_connections,
                        client_cpus=args.client_cpus, server_cpus=args.server_cpus,
                        server=SERVER_DESCRIPTION.format(version=mach.tools.get("nginx", "?")), nice=args.nice,
                        suite_rates=", ".join(f"{k} {'/'.join(map(str, v))}" for k, v in args.suite_rates
                                              if k in args.suite))
    return RunResult(date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), command=command,
                     machine=mach, settings=settings, peers=tuple(results), load_before=load_before,
                     load_after=os.getloadavg(), suites=args.suite, selection=selection)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("the benchmark needs root (network namespaces, iptables)", file=sys.stderr)
        return 2
    command = os.environ.get("BENCH_COMMAND") or "python -m bench.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    # SIGTERM (a CI timeout, say) unwinds like Ctrl-C: namespaces, sidecars and the bench mesh are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with exclusive():
            result = run(args, command.strip())
    except BenchBusy as exc:
        print(str(exc), file=sys.stderr)
        return 2
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / (dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + ".json")
    out.write_text(result.to_json())
    print(report.render_text(result))
    print(f"results: {out}")
    if not args.no_doc:
        DOC.write_text(report.update_doc(DOC.read_text(), report.render_markdown(result)))
        print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
