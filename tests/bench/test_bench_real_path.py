"""The harness through the real path: namespaces, backend, an mTLS sidecar pair, wrk."""
import os
import shutil
import subprocess
from contextlib import contextmanager

import pytest

from bench.certs import generate
from bench.measure import LoadPlan, closed_loop, measure_all, verify
from bench.peers import (
    SIDECAR_PORTS,
    BenchEnv,
    HaproxyPair,
    NginxPair,
    RunningPeer,
    start_backend,
)
from bench.procs import session_pids, stop
from bench.tools import TOOLS_DIR
from bench.topology import Side, Topology, created, teardown

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(any(shutil.which(p) is None for p in ("nginx", "haproxy", "wrk")),
                       reason="nginx, haproxy and wrk are needed"),
]

# Own names so the test never meets a benchmark running at the same time.
TOPO = Topology(bridge="mltbt0",
                client=Side(netns="mltbt-client", veth="mltbtc0", ip="198.18.252.1"),
                server=Side(netns="mltbt-server", veth="mltbts0", ip="198.18.252.2"))


@pytest.fixture
def env(tmp_path):
    with created(TOPO):
        env = BenchEnv(topo=TOPO, workdir=tmp_path, pki=generate(tmp_path / "pki"))
        backend = start_backend(env)
        try:
            yield env
        finally:
            stop(backend)
            env.close_workers()


@pytest.mark.parametrize("peer", [NginxPair(), HaproxyPair()], ids=lambda p: p.name)
def test_sidecar_pair_forwards_over_mtls_and_is_stopped(env, peer):
    with peer.start(env) as running:
        assert [s.side for s in running.sidecars] == ["server", "client"]
        assert all(s.start_to_ready_ms > 0 for s in running.sidecars)
        verify(env, running)
        # The server side refuses a client without a certificate: the hop really is mutual TLS.
        mtls_port = SIDECAR_PORTS[peer.name][1]
        curl = subprocess.run(
            ["ip", "netns", "exec", TOPO.client.netns, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
             "--max-time", "5", f"https://{TOPO.server.ip}:{mtls_port}/"], capture_output=True, check=False, text=True, timeout=30)
        assert curl.stdout.strip() in ("000", "400")
        result = closed_loop(env, running, seconds=1, connections=4)
        assert result.requests > 0 and result.errors == 0
        pids = [s.pid for s in running.sidecars]
    assert all(not session_pids(pid) for pid in pids)


class BrokenPeer:
    """Starts, but nothing answers: must be reported as failed and still be stopped."""

    name = "broken"
    stopped = False

    @contextmanager
    def start(self, env):
        try:
            yield RunningPeer(name=self.name, url="http://127.0.0.1:1/", sidecars=())
        finally:
            self.stopped = True


def test_measure_all_with_oha_when_available(env, monkeypatch):
    import bench.measure

    def fast_verify(env, running):
        if running.name == "broken":
            raise bench.measure.VerifyError("nothing listens")
        verify(env, running)

    monkeypatch.setattr(bench.measure, "verify", fast_verify)
    oha = shutil.which("oha") or str(TOOLS_DIR / "bin" / "oha")
    if not os.path.exists(oha):
        pytest.fail("oha not built: run `make bench-tools` (make test builds it)")
    plan = LoadPlan(rates=(100,), seconds=1, rounds=2, warmup_seconds=0, connections=2, wrk_connections=2,
                    idle_settle_seconds=0.0)
    broken = BrokenPeer()
    # Both pairs run at the same time (the load is interleaved), so they must not share ports.
    results = measure_all(env, [NginxPair(), broken, HaproxyPair()], oha, plan, log=lambda m: None)  # type: ignore[arg-type]
    assert [r.name for r in results] == ["nginx", "broken", "haproxy"]
    failed = results[1]
    assert failed.error == "VerifyError: nothing listens" and broken.stopped
    for result in (results[0], results[2]):
        assert result.error is None and result.fixed[0].requests > 0
        assert result.closed is not None and result.closed.rps > 0
        assert len(result.sidecars) == 2
        assert all(s.rss_idle_mb > 0 and s.rss_load_mb >= s.rss_idle_mb for s in result.sidecars)
        assert all(s.cpu_us_per_request is not None for s in result.sidecars)  # 10 ms ticks: may be 0


def test_teardown_is_idempotent():
    teardown(TOPO)
    teardown(TOPO)


@pytest.mark.slow
def test_meshlet_pair_through_meshlet_up(env):
    """The meshlet peer end to end: a private mesh, load through both proxies, mTLS seen,
    restart timing, and everything gone afterwards."""
    from bench.meshlet_peer import MeshletPair, MeshSettings
    from bench.peers import DirectPeer

    oha = shutil.which("oha") or str(TOOLS_DIR / "bin" / "oha")
    if not os.path.exists(oha):
        pytest.fail("oha not built: run `make bench-tools` (make test builds it)")
    # Not the benchmark's own names and ranges, so a benchmark may run meanwhile.
    settings = MeshSettings(bridge="mltbmt0", netns_prefix="mlbt-", pod_cidr="198.18.254.0/24",
                            service_cidr="198.19.254.0/24")
    plan = LoadPlan(rates=(100,), seconds=1, rounds=1, warmup_seconds=0, connections=2, wrk_connections=2,
                    idle_settle_seconds=0.0)
    direct, mesh = measure_all(env, [DirectPeer(), MeshletPair(settings)], oha, plan, log=print)  # type: ignore[arg-type]
    assert direct.error is None and mesh.error is None, mesh.error
    assert "mTLS confirmed" in mesh.note
    assert mesh.fixed[0].requests > 0 and not mesh.fixed[0].errors
    assert mesh.closed is not None and mesh.closed.rps > 0
    assert [s.side for s in mesh.sidecars] == ["server", "client"]
    assert all(s.start_to_ready_ms is not None and s.start_to_ready_ms > 0 for s in mesh.sidecars)
    assert all(s.rss_idle_mb > 0 for s in mesh.sidecars)
    assert not [n for n in os.listdir("/run/netns") if n.startswith("mlbt-")]
    assert subprocess.run(["ip", "link", "show", "mltbmt0"], capture_output=True, check=False).returncode != 0


# The suites' tests have their own namespaces, bridge and ranges, per test session: the tests
# above (and their private mesh) and these may run at the same time in other engineers' test
# sessions, and a topology's set-up first removes whatever has its names.
_K = os.getpid() % 24
SUITES_TOPO = Topology(bridge=f"mltbu{_K}",
                       client=Side(netns=f"mltbu{_K}-client", veth=f"mltbu{_K}c", ip="198.18.48.1"),
                       server=Side(netns=f"mltbu{_K}-server", veth=f"mltbu{_K}s", ip="198.18.48.2"))
"""Addresses only inside the namespaces (the bridge has none), so sessions may share them."""
SUITES_MESH = {"bridge": f"mltbmu{_K}", "netns_prefix": f"mlbu{_K}-", "pod_cidr": f"198.18.{24 + _K}.0/24",
               "service_cidr": f"198.19.{24 + _K}.0/24"}
"""The mesh's bridge holds the pod range's gateway in the root namespace: one /24 per session."""


@pytest.fixture
def suites_env(tmp_path):
    with created(SUITES_TOPO):
        env = BenchEnv(topo=SUITES_TOPO, workdir=tmp_path, pki=generate(tmp_path / "pki"))
        backend = start_backend(env)
        try:
            yield env
        finally:
            stop(backend)
            env.close_workers()


def test_h2c_and_grpc_direct_through_oha_and_h2load(suites_env):
    """The h2 and grpc suites' baselines: nginx's h2c listener and the grpclib echo server, loaded
    with oha --http2 at a fixed rate and h2load closed loop (percentiles from its request log)."""
    from bench.peers import DirectGrpcPeer, DirectH2Peer

    if shutil.which("h2load") is None:
        pytest.fail("h2load not installed: Debian nghttp2-client (make setup installs it)")
    oha = shutil.which("oha") or str(TOOLS_DIR / "bin" / "oha")
    if not os.path.exists(oha):
        pytest.fail("oha not built: run `make bench-tools` (make test builds it)")
    plan = LoadPlan(rates=(50,), seconds=1, rounds=1, warmup_seconds=0, connections=2, wrk_connections=2,
                    idle_settle_seconds=0.0)
    h2, grpc = measure_all(suites_env, [DirectH2Peer(), DirectGrpcPeer()], oha, plan, log=print)  # type: ignore[arg-type]
    for result, suite in ((h2, "h2"), (grpc, "grpc")):
        assert result.error is None, result.error
        assert result.suite == suite and result.name == "direct"
        assert result.fixed[0].requests > 0 and not result.fixed[0].errors
        assert result.closed is not None and result.closed.rps > 0 and result.closed.errors == 0
        assert 0 < result.closed.p50_ms <= result.closed.p99_ms


@pytest.mark.slow
def test_meshlet_suites_share_one_mesh(suites_env):
    """The routes, h2 and grpc rows through one private mesh: the 10-rule VirtualService routes the
    request with the last rule's headers, retries turn the flaky upstream's 503s into successes,
    h2c and gRPC pass both proxies; the mesh is gone afterwards."""
    from bench.meshlet_peer import MeshSettings
    from bench.suites import plan_peers

    if shutil.which("h2load") is None:
        pytest.fail("h2load not installed: Debian nghttp2-client (make setup installs it)")
    oha = shutil.which("oha") or str(TOOLS_DIR / "bin" / "oha")
    if not os.path.exists(oha):
        pytest.fail("oha not built: run `make bench-tools` (make test builds it)")
    settings = MeshSettings(**SUITES_MESH)
    plan = LoadPlan(rates=(50,), seconds=1, rounds=1, warmup_seconds=0, connections=2, wrk_connections=2,
                    idle_settle_seconds=0.0, suite_rates=(("routes", (50,)), ("h2", (50,)), ("grpc", (20,))))
    peers = plan_peers(("routes", "h2", "grpc"), (), settings)
    results = {(r.suite, r.name): r for r in measure_all(suites_env, peers, oha, plan, log=print)}  # type: ignore[arg-type]
    assert not [r.error for r in results.values() if r.error]
    for key in (("routes", "meshlet+vs10"), ("routes", "meshlet+retry3"), ("routes", "meshlet flaky10%+retry3"),
                ("h2", "meshlet"), ("grpc", "meshlet")):
        r = results[key]
        assert r.fixed[0].requests > 0 and r.closed is not None and r.closed.requests > 0, key
    # A request the table did not route would be a 404, a failed retry a 503: both count as errors.
    assert not results[("routes", "meshlet+vs10")].fixed[0].errors
    flaky = results[("routes", "meshlet flaky10%")]
    assert flaky.closed is not None
    assert sum(flaky.fixed[0].errors.values()) + flaky.closed.errors > 0  # without retries the 503s get through
    assert not [n for n in os.listdir("/run/netns") if n.startswith(settings.netns_prefix)]


@pytest.mark.parametrize("suite", ["h2", "grpc"])
def test_nginx_and_haproxy_pairs_speak_http2_over_mtls(suites_env, suite):
    """The h2/grpc suites' sidecar pairs: h2c in, HTTP/2 over mutual TLS between the instances."""
    from bench.h2_pairs import HaproxyH2Pair, NginxH2Pair
    from bench.peers import EchoServer

    if shutil.which("h2load") is None:
        pytest.fail("h2load not installed: Debian nghttp2-client (make setup installs it)")
    echo = EchoServer() if suite == "grpc" else None
    for peer in (NginxH2Pair(suite, echo), HaproxyH2Pair(suite, echo)):
        with peer.start(suites_env) as running:
            assert running.request.http2 and running.grpc == (suite == "grpc")
            verify(suites_env, running)
            result = closed_loop(suites_env, running, seconds=1, connections=2)
            assert result.requests > 0 and result.errors == 0, peer.name
