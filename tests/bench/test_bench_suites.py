"""The suites beyond HTTP/1 (pure parts): request shapes, h2load output, the bench mesh's
extra manifests, per-suite rates, their tables, and the route-selection micro-benchmark."""
from pathlib import Path

import pytest
import yaml

from bench import report, report_suites
from bench.grpc_echo import MESSAGE, request_body
from bench.load import (
    ClosedLoop,
    FixedRate,
    LoadError,
    RequestSpec,
    h2load_cmd,
    oha_cmd,
    parse_h2load,
    wrk_cmd,
)
from bench.measure import LoadPlan, label
from bench.meshlet_peer import manifests
from bench.model import Machine, PeerResult, RunResult, Settings, SidecarStats
from bench.routebench import SelectionResult, selection_time
from bench.run import parse_args
from bench.suites import (
    ROUTE_RULES,
    MeshletVariant,
    grpc_variants,
    h2_variants,
    plan_peers,
    route_table_vs,
    route_variants,
)

H2LOAD_OUT = """\
starting benchmark...
finished in 4.00s, 2310.25 req/s, 150.20KB/s
requests: 9241 total, 9273 started, 9241 done, 9239 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 9239 2xx, 0 3xx, 0 4xx, 2 5xx
"""


def test_request_spec_shapes_oha_wrk_and_h2load():
    spec = RequestSpec(http2=True, headers=("content-type: application/grpc", "te: trailers"), body=Path("/b"))
    argv = oha_cmd(Path("/oha"), "http://h:1/p", rate=100, seconds=2, connections=4, spec=spec)
    assert argv[-1] == "http://h:1/p" and "--http2" in argv and argv[argv.index("-m") + 1] == "POST"
    assert argv[argv.index("-D") + 1] == "/b" and argv.count("-H") == 2
    h2 = h2load_cmd("http://h:1/p", seconds=3, connections=8, log_file=Path("/l"), spec=spec)
    assert "-c8" in h2 and "-D3" in h2 and "--log-file=/l" in h2 and h2[h2.index("-d") + 1] == "/b"
    assert wrk_cmd("http://h/", seconds=1, connections=2, spec=RequestSpec(headers=("x-a: 1",)))[-3:] == \
        ["-H", "x-a: 1", "http://h/"]
    with pytest.raises(ValueError, match="h2load"):
        wrk_cmd("http://h/", seconds=1, connections=2, spec=RequestSpec(http2=True))


def test_parse_h2load_counts_failures_and_takes_percentiles_from_the_log():
    log = "".join(f"1700000000{i:06d}\t200\t{(i + 1) * 1000}\n" for i in range(100))
    result = parse_h2load(8, H2LOAD_OUT, log + "garbage\n")
    assert result.rps == 2310.25 and result.requests == 9241
    assert result.errors == 2 + 2  # failed + 5xx
    assert result.p50_ms == 51.0 and result.p99_ms == 100.0
    with pytest.raises(LoadError, match="cannot read h2load"):
        parse_h2load(8, "boom", log)
    with pytest.raises(LoadError, match="no request"):
        parse_h2load(8, H2LOAD_OUT, "")


def test_grpc_request_body_is_one_length_prefixed_message():
    body = request_body()
    assert body[0] == 0 and int.from_bytes(body[1:5], "big") == len(MESSAGE) and body[5:] == MESSAGE


def test_route_table_matches_only_the_last_rule_for_the_bench_request():
    import re

    doc = yaml.safe_load(route_table_vs("bench-routes"))
    rules = doc["spec"]["http"]
    assert len(rules) == ROUTE_RULES
    headers = {"x-bench-route": f"rule-{ROUTE_RULES - 1}", "x-bench-user": "user-42"}

    def fits(match):
        uri = match.get("uri", {}).get("regex")
        if uri is not None and not re.fullmatch(uri, "/api/v1/orders/42"):
            return False
        for name, m in match.get("headers", {}).items():
            got = headers.get(name)
            if got is None or ("exact" in m and got != m["exact"]) or ("regex" in m and not re.fullmatch(m["regex"], got)):
                return False
        return True

    hits = [r["name"] for r in rules if any(fits(m) for m in r["match"])]
    assert hits == [f"rule-{ROUTE_RULES - 1}"]


def test_extra_manifests_are_accepted_by_the_mesh_model():
    from meshlet.controller.local.spec import DeploymentSpec
    from meshlet.controller.model.loader import load_text

    variants = (*route_variants(), *h2_variants(), *grpc_variants())
    docs = "---\n".join(d for v in variants for d in v.docs)
    text = manifests(["nginx"], ["taskset", "-c", "1", "/usr/bin/python3", "grpc_echo.py"], docs)
    resources = load_text(text, "bench.yaml")
    kinds = [r.kind for r in resources]
    assert kinds.count("VirtualService") == 4 and kinds.count("Service") == 1 + len(variants)
    server = next(d for d in yaml.safe_load_all(text) if d["kind"] == "Deployment" and d["metadata"]["name"] == "bench-server")
    spec = DeploymentSpec.from_obj(server)
    assert [c.argv[-1] for c in spec.containers] == ["nginx", "grpc_echo.py"]


def test_plan_peers_shares_one_mesh_and_labels_suites():
    peers = plan_peers(("http1", "routes", "h2", "grpc"), ("direct", "meshlet"))
    labels = [label(p) for p in peers]
    assert labels[:4] == ["direct", "meshlet", "h2/direct", "grpc/direct"]
    assert "routes/meshlet+vs10" in labels and "h2/meshlet" in labels and "grpc/meshlet" in labels
    mesh = peers[1]
    variants = [p for p in peers if isinstance(p, MeshletVariant)]
    assert len(variants) == 6 and all(p.mesh is mesh for p in variants)
    assert mesh.grpc and "bench-routes" in mesh.extra_docs
    full = [label(p) for p in plan_peers(("h2", "grpc"), ("direct", "nginx", "haproxy"))]
    assert full[:6] == ["h2/direct", "h2/nginx", "h2/haproxy", "grpc/direct", "grpc/nginx", "grpc/haproxy"]
    # The routes suite alone still brings the pair it is compared with.
    assert [label(p) for p in plan_peers(("routes",), ())][:2] == ["direct", "meshlet"]


def test_suite_rates_option_and_plan():
    args = parse_args(["--suite", "grpc,h2", "--suite-rates", "grpc=50+80"])
    assert args.suite == ("h2", "grpc")
    plan = LoadPlan(rates=(500, 2000), suite_rates=args.suite_rates)
    assert plan.rates_of("grpc") == (50, 80) and plan.rates_of("http1") == (500, 2000)
    assert LoadPlan(rates=(300, 900)).rates_of("routes") == (300,)
    for bad in (["--suite", "http3"], ["--suite-rates", "http1=5"], ["--suite-rates", "h2"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def _fixed(rate, p50, p99, errors=None):
    return FixedRate(rate=rate, requests=rate * 4, achieved_rps=rate, success_rate=1.0, p50_ms=p50, p99_ms=p99,
                     p999_ms=p99 * 2, errors=errors or {})


def _run():
    cpu = lambda v: (SidecarStats("server", None, 37.0, 40.0, v, {500: v}),
                     SidecarStats("client", None, 37.0, 40.0, v, {500: v}))
    peers = (
        PeerResult("direct", fixed=(_fixed(500, 0.3, 1.0),), closed=ClosedLoop(32, 1000, 20000.0, 1.0, 3.0, 0)),
        PeerResult("meshlet", fixed=(_fixed(500, 1.3, 4.0),), closed=ClosedLoop(32, 1000, 2000.0, 9.0, 30.0, 0),
                   sidecars=cpu(200.0)),
        PeerResult("direct", suite="h2", fixed=(_fixed(200, 0.4, 1.0),), closed=ClosedLoop(32, 1, 8000.0, 2.0, 5.0, 0)),
        PeerResult("meshlet", suite="h2", fixed=(_fixed(200, 2.4, 9.0),), closed=ClosedLoop(32, 1, 1000.0, 20, 50, 0)),
        PeerResult("meshlet+vs10", suite="routes", fixed=(_fixed(500, 1.5, 5.0),),
                   closed=ClosedLoop(32, 1000, 1800.0, 10.0, 33.0, 0), sidecars=cpu(230.0)),
        PeerResult("meshlet flaky10%", suite="routes", fixed=(_fixed(500, 1.4, 4.0, {"HTTP 503": 200}),),
                   closed=ClosedLoop(32, 1000, 2000.0, 9.0, 30.0, 100), sidecars=cpu(210.0)),
        PeerResult("meshlet", suite="grpc", error="VerifyError: never returned grpc-status 0"),
    )
    return RunResult(date="d", command="make bench",
                     machine=Machine(nproc=2, cpu_model="x", kernel="k", python="3.11", tools={}),
                     settings=Settings(rates=(500,), seconds=4, rounds=3, warmup_seconds=2, connections=32,
                                       wrk_connections=32, client_cpus="0", server_cpus="1", server="nginx"),
                     peers=peers, suites=("http1", "routes", "h2", "grpc"),
                     selection=(SelectionResult(1000, 1000, "10 rules (last matches)", 25000.0, 50000),))


def test_suite_tables():
    run = _run()
    h2 = report_suites.protocol_rows(run, "h2")
    assert h2[1][:3] == ["meshlet", "200", "200"] and h2[1][6] == "2.000" and h2[1][9] == "12 %"
    routes = {r[0]: r for r in report_suites.routes_rows(run)}
    assert routes["+vs10"][4] == "0.200" and routes["+vs10"][7] == "90 %" and routes["+vs10"][8] == "230.0"
    assert routes["flaky10%"][-1] == "300 of 3000 (10.0 %)"
    assert report_suites.selection_rows(run) == [["1,000", "1,000", "10 rules (last matches)", "25.00"]]
    md = report.render_markdown(run)
    assert "### HTTP/2" in md and "### Route table and retries" in md and "### Route selection per request" in md
    assert "grpc/meshlet: VerifyError" in md
    # HTTP/1 tables keep only the HTTP/1 peers.
    assert "| meshlet+vs10 | 500 |" not in md
    assert RunResult.from_json(run.to_json()) == run


def test_route_selection_micro_benchmark_selects_the_last_rule():
    result = selection_time(3, ROUTE_RULES, requests=30, batches=1)
    assert result.services == 3 and result.spread == 3 and result.ns_per_request > 0
    assert selection_time(5, 0, requests=10, batches=1, spread=1).spread == 1
