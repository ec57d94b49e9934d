"""Pure parts of the meshlet pair: manifests the mesh accepts, finding the Service VIP."""
import json

import yaml

from bench.meshlet_peer import (
    CLIENT,
    NAMESPACE,
    SERVER,
    _runtime_pids,
    manifests,
    service_ip_from_hosts,
)

SERVER_ARGV = ["taskset", "-c", "1", "nginx", "-p", "/tmp/x", "-e", "stderr", "-c", "/tmp/x/nginx.conf"]


def test_manifests_are_accepted_by_the_mesh_model_and_runtime():
    from meshlet.controller.local.spec import DeploymentSpec, ServiceSpec
    from meshlet.controller.model.loader import load_text

    text = manifests(SERVER_ARGV)
    assert len(load_text(text, "bench.yaml")) == 6
    docs = list(yaml.safe_load_all(text))
    ns = next(d for d in docs if d["kind"] == "Namespace")
    assert ns["metadata"] == {"name": NAMESPACE, "labels": {"istio-injection": "enabled"}}
    deps = {d["metadata"]["name"]: DeploymentSpec.from_obj(d) for d in docs if d["kind"] == "Deployment"}
    assert deps[SERVER].containers[0].argv == tuple(SERVER_ARGV)
    assert deps[SERVER].service_account == SERVER and deps[CLIENT].service_account == CLIENT
    svc = ServiceSpec.from_obj(next(d for d in docs if d["kind"] == "Service"))
    assert svc.selects(NAMESPACE, deps[SERVER].labels) and not svc.selects(NAMESPACE, deps[CLIENT].labels)


def test_service_ip_from_a_pods_hosts_file():
    hosts = "127.0.0.1 localhost\n# comment bench-server\n198.18.254.7 bench-server bench-server.mltbench  # svc\n"
    assert service_ip_from_hosts(hosts, "bench-server") == "198.18.254.7"
    assert service_ip_from_hosts(hosts, "bench") is None


def test_runtime_pids_only_from_pid_keys(tmp_path):
    path = tmp_path / "runtime.json"
    path.write_text(json.dumps({"identity": {"pid": 4242, "port": 8080}, "pids": [77, 1], "runtime_pid": 99}))
    assert sorted(_runtime_pids(path)) == [77, 99, 4242]
    assert _runtime_pids(tmp_path / "missing.json") == []


def test_priority_and_pinning_wrappers_exec_in_order():
    from bench.procs import pinned

    assert pinned(["oha", "x"], netns="ns", cpus="0", nice=-5) == [
        "ip", "netns", "exec", "ns", "taskset", "-c", "0", "nice", "-n", "-5", "oha", "x"]
    assert pinned(["wrk"]) == ["wrk"]


def test_leftovers_are_processes_naming_another_runs_workdir(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from bench.stale import BenchBusy, exclusive, leftovers, workdirs_of

    other = "/tmp/meshlet-bench-zz9test/backend"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", other])
    try:
        deadline = time.monotonic() + 30
        while not workdirs_of(proc.pid) and time.monotonic() < deadline:  # cmdline appears once exec is done
            time.sleep(0.01)
        assert workdirs_of(proc.pid) == {b"/meshlet-bench-zz9test"}
        assert proc.pid in leftovers(tmp_path / "meshlet-bench-current")
        assert proc.pid not in leftovers(tmp_path.parent / "meshlet-bench-zz9test")
        assert os.getpid() not in leftovers(tmp_path)
    finally:
        proc.kill()
        proc.wait()
    lock = tmp_path / "lock"
    with exclusive(lock):
        try:
            with exclusive(lock):
                raise AssertionError("a second holder got the lock")
        except BenchBusy:
            pass


def test_a_shell_inside_a_kept_workdir_is_not_a_leftover(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from bench.stale import leftovers

    env = {**os.environ, "PWD": "/tmp/meshlet-bench-zz8test", "MESHLET_PROXY_TRUST_ANCHORS": "/etc/ca.crt"}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        time.sleep(0.2)
        assert proc.pid not in leftovers(tmp_path / "meshlet-bench-current")
    finally:
        proc.kill()
        proc.wait()
