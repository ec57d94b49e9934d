"""Targets, tables and the docs section from a made-up run."""
import pytest

from bench import report
from bench.load import ClosedLoop, FixedRate
from bench.model import Machine, PeerResult, RunResult, Settings, SidecarStats


def _fixed(rate, p50, p99, p999):
    return FixedRate(rate=rate, requests=rate * 10, achieved_rps=rate, success_rate=1.0,
                     p50_ms=p50, p99_ms=p99, p999_ms=p999, errors={})


def _run(mesh_p50=0.9, mesh_idle=30.0, mesh_rps=3000.0, with_mesh=True):
    sidecar = lambda side, idle: SidecarStats(side=side, start_to_ready_ms=300.0, rss_idle_mb=idle,
                                               rss_load_mb=idle + 5, cpu_us_per_request=80.0)
    peers = [
        PeerResult(name="direct", fixed=(_fixed(500, 0.3, 0.8, 1.5), _fixed(2000, 0.3, 1.0, 2.0)),
                   closed=ClosedLoop(32, 500000, 50000.0, 0.5, 3.0, 0)),
        PeerResult(name="nginx", fixed=(_fixed(500, 0.7, 1.5, 3.0),),
                   closed=ClosedLoop(32, 100000, 10000.0, 3.0, 40.0, 0),
                   sidecars=(sidecar("server", 17.0), sidecar("client", 17.0))),
        PeerResult(name="haproxy", error="ProcessError: haproxy-server exited with 1"),
    ]
    if with_mesh:
        peers.insert(1, PeerResult(name="meshlet", fixed=(_fixed(500, 0.3 + mesh_p50, 4.0, 9.0),),
                                   closed=ClosedLoop(32, 30000, mesh_rps, 9.0, 30.0, 0),
                                   sidecars=(sidecar("server", mesh_idle), sidecar("client", 25.0)),
                                   note="via meshlet up"))
    return RunResult(
        date="2026-11-25 22:00 UTC", command="make bench",
        machine=Machine(nproc=2, cpu_model="AMD EPYC", kernel="6.1", python="3.11.7", tools={"oha": "1.16.0"}),
        settings=Settings(rates=(500, 2000), seconds=10, rounds=3, warmup_seconds=2, connections=32, wrk_connections=32,
                          client_cpus="0", server_cpus="1", server="nginx"),
        peers=tuple(peers),
    )


def test_targets_met_and_missed():
    checks = {c.what: c for c in report.targets(_run())}
    assert checks["added p50 at 500 req/s"].met is True
    assert checks["added p99 at 500 req/s"].met is False  # 4.0 - 0.8 = 3.2 ms
    assert checks["added p99 at 500 req/s"].value == "3.200 ms"
    assert checks["max throughput vs nginx pair"].met is True  # 30 %
    assert checks["idle proxy RSS (largest of the pair)"].met is True
    assert checks["proxy start to ready (slowest of the pair)"].met is True
    worse = {c.what: c for c in report.targets(_run(mesh_p50=1.5, mesh_idle=45.0, mesh_rps=2000.0))}
    assert worse["added p50 at 500 req/s"].met is False
    assert worse["max throughput vs nginx pair"].verdict == "MISSED"
    assert worse["idle proxy RSS (largest of the pair)"].met is False


def test_targets_without_meshlet_are_not_measured():
    assert all(c.met is None for c in report.targets(_run(with_mesh=False)))


def test_added_latency_is_relative_to_direct_in_the_same_run():
    run = _run()
    assert report.added(run, run.peer("nginx"), 500) == pytest.approx((0.4, 0.7, 1.5))
    assert report.added(run, run.peer("nginx"), 2000) == (None, None, None)


def test_a_peer_that_cannot_keep_the_rate_is_marked():
    run = _run()
    slow = FixedRate(rate=2000, requests=9000, achieved_rps=900.0, success_rate=1.0, p50_ms=300.0, p99_ms=900.0,
                     p999_ms=950.0, errors={})
    mesh = run.peer("meshlet")
    run = RunResult(date=run.date, command=run.command, machine=run.machine, settings=run.settings,
                    peers=tuple(p if p.name != "meshlet" else PeerResult(name="meshlet", fixed=(*mesh.fixed, slow))
                                for p in run.peers))
    md = report.render_markdown(run)
    assert "| meshlet | 2000 | 900 (behind) |" in md
    assert "| meshlet | 500 | 500 |" in md


def test_text_and_markdown_name_every_peer_and_failure():
    run = _run()
    text = report.render_text(run)
    md = report.render_markdown(run)
    for out in (text, md):
        assert "meshlet" in out and "nginx" in out and "direct" in out
        assert "haproxy: ProcessError" in out
    assert "`make bench`" in md and "AMD EPYC" in md and "oha 1.16.0" in md and "via meshlet up" in md


def test_json_round_trip():
    run = _run()
    assert report.render_markdown(RunResult.from_json(run.to_json())) == report.render_markdown(run)


def test_update_doc_replaces_only_between_markers():
    doc = f"# B\n\nintro\n\n{report.BEGIN}\nold\n{report.END}\ntrailer\n"
    new = report.update_doc(doc, "new table\n")
    assert new == f"# B\n\nintro\n\n{report.BEGIN}\nnew table\n{report.END}\ntrailer\n"
    assert report.update_doc(new, "new table\n") == new
    with pytest.raises(report.ReportError):
        report.update_doc("# no markers\n", "x")


def test_the_real_doc_has_the_markers():
    from bench.run import DOC

    report.update_doc(DOC.read_text(), "x")
