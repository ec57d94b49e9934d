"""Unit tests with fakes: spec reading, readiness parsing, endpoints, the check runner and renderers."""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

import pytest
from meshlet.controller.cli.check import TableObserver, render_json
from meshlet.controller.local.healthcheck import (
    Category,
    Checker,
    CheckFailed,
    CheckWarning,
    SkipCheck,
    run_checks,
)
from meshlet.controller.local.process import Backoff, listening_ports, netns_argv
from meshlet.controller.local.runtime import service_rules
from meshlet.controller.local.spec import DeploymentSpec, ServiceSpec, SpecError

IP = ipaddress.IPv4Address

DEPLOY = {
    "metadata": {"name": "web", "namespace": "demo"},
    "spec": {"replicas": 2, "template": {
        "metadata": {"labels": {"app": "web"}, "annotations": {"sidecar.istio.io/inject": "false"}},
        "spec": {"serviceAccountName": "web-sa", "containers": [{
            "name": "app", "command": ["python", "-m", "http.server"], "args": ["8080"],
            "env": [{"name": "A", "value": "1"},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "ports": [{"containerPort": 8080, "name": "http"}]}]}}},
}


def test_deployment_spec_reads_the_template():
    d = DeploymentSpec.from_obj(DEPLOY)
    assert d.key == ("demo", "web") and d.replicas == 2 and d.service_account == "web-sa"
    assert d.containers[0].argv == ("python", "-m", "http.server", "8080")
    assert [e.field_path for e in d.containers[0].env] == ["", "status.podIP"]
    assert d.containers[0].ports[0].name == "http"
    changed = json.loads(json.dumps(DEPLOY))
    changed["spec"]["replicas"] = 5
    assert DeploymentSpec.from_obj(changed).template_hash == d.template_hash
    changed["spec"]["template"]["spec"]["containers"][0]["args"] = ["9090"]
    assert DeploymentSpec.from_obj(changed).template_hash != d.template_hash


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.pop("command"), "command is empty"),
    (lambda c: c["env"].append({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}), "status.hostIP"),
    (lambda c: c["ports"].append({"containerPort": 0}), "containerPort"),
])
def test_deployment_spec_errors_name_the_field(mutate, message):
    bad = json.loads(json.dumps(DEPLOY))
    mutate(bad["spec"]["template"]["spec"]["containers"][0])
    with pytest.raises(SpecError, match="Deployment demo/web") as e:
        DeploymentSpec.from_obj(bad)
    assert message in str(e.value)


def test_listening_ports_from_proc_net_tcp():
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n"
        "   1: 0100007F:3A98 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1\n"
        "   2: 0500A8C0:1F90 0100A8C0:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n"
    )
    assert listening_ports(text) == {8080, 15000}


def test_backoff_doubles_up_to_the_maximum():
    b = Backoff(initial=0.5, maximum=4)
    delays = [0.0]
    for _ in range(6):
        delays.append(b.next(delays[-1]))
    assert delays[1:] == [0.5, 1, 2, 4, 4, 4]


def test_netns_argv():
    assert netns_argv("n", ("curl", "x"), uid=1000, gid=1000) == (
        "ip", "netns", "exec", "n", "setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups", "--", "curl", "x")
    assert netns_argv("n", ("app",)) == ("ip", "netns", "exec", "n", "app")


@dataclass
class FakeState:
    ready: bool


@dataclass
class FakePod:
    namespace: str
    ip: ipaddress.IPv4Address
    deploy: DeploymentSpec
    state: FakeState = field(default_factory=lambda: FakeState(True))


def test_service_rules_use_ready_selected_pods_and_named_ports():
    d = DeploymentSpec.from_obj(DEPLOY)
    pods = [FakePod("demo", IP("198.18.0.5"), d), FakePod("demo", IP("198.18.0.6"), d, FakeState(False)),
            FakePod("other", IP("198.18.0.7"), d)]
    svc = ServiceSpec.from_obj({"metadata": {"name": "web", "namespace": "demo"}, "spec": {
        "clusterIP": "198.19.0.10", "selector": {"app": "web"},
        "ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": "nope"}, {"port": 8080}]}})
    rules = service_rules([svc], pods)  # type: ignore[arg-type]
    assert [(r.port, [(str(e.ip), e.port) for e in r.endpoints]) for r in rules] == [
        (80, [("198.18.0.5", 8080)]), (81, []), (8080, [("198.18.0.5", 8080)])]
    with pytest.raises(SpecError, match="SCTP"):
        ServiceSpec.from_obj({"metadata": {"name": "s", "namespace": "demo"},
                              "spec": {"ports": [{"port": 1, "protocol": "SCTP"}]}})
    no_vip = ServiceSpec.from_obj({"metadata": {"name": "h", "namespace": "demo"}, "spec": {"selector": {"app": "web"}}})
    assert service_rules([no_vip], pods) == []  # type: ignore[arg-type]


async def _ok(ctx):
    return None


def _raising(exc):
    async def check(ctx):
        raise exc
    return check


async def test_runner_observes_each_result_and_stops_after_a_fatal_failure():
    seen = []
    cats = [
        Category("a", (Checker("fine", "h-fine", _ok),
                       Checker("warns", "h-warn", _raising(CheckWarning("soon"))),
                       Checker("soft", "h-soft", _raising(CheckFailed("meh")), warning=True),
                       Checker("skipped", "h-skip", _raising(SkipCheck())))),
        Category("b", (Checker("broken", "h-broken", _raising(CheckFailed("bad\nsecond line")), fatal=True),
                       Checker("never", "h-never", _ok))),
    ]
    summary = await run_checks(cats, None, seen.append)
    assert [(r.description, r.result) for r in seen] == [
        ("fine", "success"), ("warns", "warning"), ("soft", "warning"), ("broken", "error")]
    assert summary.success is False

    lines: list[str] = []
    table = TableObserver(lines.append)
    for r in seen:
        table(r)
    table.finish(summary)
    text = "\n".join(lines)
    assert "a\n-\n√ fine\n‼ warns\n    soon\n    see docs/troubleshooting.md#h-warn for hints" in text
    assert "× broken\n    bad\n    second line\n    see docs/troubleshooting.md#h-broken for hints" in text
    assert text.endswith("Status check results are ×")

    data = json.loads(render_json(summary))
    assert data["success"] is False
    assert [c["categoryName"] for c in data["categories"]] == ["a", "b"]
    assert data["categories"][1]["checks"][0] == {
        "description": "broken", "hint": "docs/troubleshooting.md#h-broken", "error": "bad\nsecond line",
        "result": "error"}


async def test_warnings_alone_do_not_fail():
    summary = await run_checks([Category("a", (Checker("w", "h", _raising(CheckWarning("x"))),))], None, lambda r: None)
    assert summary.success is True


def _write_ca(d, *, issuer_days: int, foreign_issuer: bool = False):
    import datetime as dt

    from meshlet.identity.issuer import cert_pem, new_anchor, new_issuer

    anchor, key = new_anchor("cluster.local")
    signer, signer_key = new_anchor("cluster.local") if foreign_issuer else (anchor, key)
    issuer, _ = new_issuer("cluster.local", signer, signer_key, lifetime=dt.timedelta(days=issuer_days))
    d.mkdir(parents=True)
    (d / "ca.crt").write_bytes(cert_pem(anchor))
    (d / "issuer.crt").write_bytes(cert_pem(issuer))


async def _identity_results(tmp_path):
    from meshlet.controller.config import LocalConfig
    from meshlet.controller.local.checks import CheckContext, local_categories

    identity = [c for c in local_categories() if c.name == "meshlet-identity"]
    seen = []
    summary = await run_checks(identity, CheckContext(LocalConfig(state_dir=tmp_path)), seen.append)
    return summary, {r.description: r for r in seen}


async def test_identity_checks_warn_before_expiry(tmp_path):
    _write_ca(tmp_path / "identity", issuer_days=30)
    summary, results = await _identity_results(tmp_path)
    soon = results["issuer certificate is valid for at least 60 days"]
    assert soon.result == "warning" and "expires in" in (soon.error or "")
    assert results["issuer certificate is issued by the trust anchor"].ok
    assert summary.success  # a warning does not fail `meshlet check`


async def test_identity_checks_fail_for_a_foreign_issuer(tmp_path):
    _write_ca(tmp_path / "identity", issuer_days=365, foreign_issuer=True)
    summary, results = await _identity_results(tmp_path)
    bad = results["issuer certificate is issued by the trust anchor"]
    assert bad.result == "error" and "not signed by any trust anchor" in (bad.error or "")
    assert not summary.success


async def test_identity_checks_fail_without_ca_files(tmp_path):
    summary, results = await _identity_results(tmp_path)
    assert not summary.success
    # reported once, not once per certificate check
    assert list(results) == ["trust anchor and issuer certificates can be read"]
    assert "No such file" in (results["trust anchor and issuer certificates can be read"].error or "")


@pytest.mark.parametrize("probe, expected", [
    ({"httpGet": {"path": "/health", "port": 8080}}, ("http", 8080, "/health", 3)),
    ({"httpGet": {"port": "http"}, "failureThreshold": 1}, ("http", 8080, "/", 1)),
    ({"tcpSocket": {"port": "8080"}}, ("tcp", 8080, "/", 3)),
    ({"exec": {"command": ["true"]}}, None),
])
def test_readiness_probes(probe, expected):
    d = json.loads(json.dumps(DEPLOY))
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = probe
    got = DeploymentSpec.from_obj(d).containers[0].readiness
    assert (None if got is None else (got.kind, got.port, got.path, got.failure_threshold)) == expected


def test_readiness_probe_errors():
    d = json.loads(json.dumps(DEPLOY))
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"port": "grpc"}}
    with pytest.raises(SpecError, match="'grpc' names no container port"):
        DeploymentSpec.from_obj(d)
