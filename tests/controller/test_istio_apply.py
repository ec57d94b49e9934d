"""`meshlet apply` / `get` with the Istio kinds, through the CLI and the real executable."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from meshlet.controller.cli.main import cli

EXAMPLES = Path("/work/shared/seeds/examples")
if not EXAMPLES.is_dir():
    EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "examples"

# The seed's examples live in istio-system and production besides default; on a cluster with Istio
# those namespaces exist already.
NAMESPACES = """\
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: production}
"""


def run(state: Path, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--state-dir", str(state), *args], input=input)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    s = tmp_path / "state"
    assert run(s, "apply", "-f", "-", input=NAMESPACES).exit_code == 0
    return s


def test_apply_every_example_then_get(state: Path) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        result = run(state, "apply", "-f", str(path))
        if path.name.startswith("16-"):
            assert result.exit_code == 1
            assert "spec.hosts: missing: a VirtualService needs at least one host" in result.output
            continue
        assert result.exit_code == 0, (path.name, result.output)
    vs = run(state, "get", "vs").output
    assert {"reviews-route", "httpbin-mirror", "ratings-fault", "myapp-canary", "myapp"} <= set(vs.split())
    for kind, ns, name in [("dr", "default", "reviews-destination"), ("gw", "istio-system", "ingress-gateway"),
                           ("se", "default", "mysql-external"), ("pa", "production", "production-mtls"),
                           ("authorizationpolicies", "default", "frontend-ingress"),
                           ("requestauthentications", "default", "jwt-example"),
                           ("telemetries", "istio-system", "mesh-default"),
                           ("proxyconfigs", "istio-system", "default")]:
        result = run(state, "get", kind, "-n", ns)
        assert result.exit_code == 0 and name in result.output, (kind, result.output)
    out = yaml.safe_load(run(state, "get", "pa", "default", "-n", "production", "-o", "yaml").output)
    assert out["spec"] == {"mtls": {"mode": "STRICT"}, "portLevelMtls": {8080: {"mode": "DISABLE"}}}


def test_apply_warns_about_seed_spellings(state: Path) -> None:
    result = run(state, "apply", "-f", str(EXAMPLES / "08-request-authentication.yaml"))
    assert result.exit_code == 0
    assert "Warning: " in result.output and "please write 'fromHeaders'" in result.output


def test_broken_resource_is_rejected_and_nothing_applied(state: Path) -> None:
    text = (EXAMPLES / "14-weights-80-20.yaml").read_text().replace("weight: 20", "weight: 30")
    text += "---\n" + (EXAMPLES / "12-myapp-canary.yaml").read_text()
    result = run(state, "apply", "-f", "-", input=text)
    assert result.exit_code == 1
    assert "document 1: spec.http[0].route: total destination weight 110 != 100" in result.output
    assert run(state, "get", "vs", "myapp-canary").exit_code == 1  # the good document was not applied either


def test_meshconfig_and_httproute(state: Path) -> None:
    text = """\
apiVersion: meshlet.io/v1alpha1
kind: MeshConfig
metadata: {name: default}
spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews-split}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: end-user, value: jason}]}]
    backendRefs: [{name: reviews-v1, port: 9080, weight: 70}, {name: reviews-v2, port: 9080, weight: 30}]
    timeouts: {request: 2s}
"""
    result = run(state, "apply", "-f", "-", input=text)
    assert result.exit_code == 0, result.output
    assert "meshconfig.meshlet.io/default created" in result.output
    assert "reviews-split" in run(state, "get", "httproutes").output
    out = yaml.safe_load(run(state, "get", "meshconfigs", "default", "-o", "yaml").output)
    assert out["spec"]["outboundTrafficPolicy"]["mode"] == "REGISTRY_ONLY"


def test_real_executable_applies_the_examples(tmp_path: Path) -> None:
    env = {**os.environ, "MESHLET_STATE_DIR": str(tmp_path / "state")}
    installed = shutil.which("meshlet")
    exe = [installed] if installed else [sys.executable, "-m", "meshlet.controller.cli.main"]

    def meshlet(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*exe, *args], env=env, capture_output=True, text=True, timeout=120, input=input)

    assert meshlet("apply", "-f", "-", input=NAMESPACES).returncode == 0
    good = [str(p) for p in sorted(EXAMPLES.glob("*.yaml")) if not p.name.startswith("16-")]
    # 10 and 15 both define istio-system/egress-gateway: apply them in two requests, as a user would
    first = meshlet("apply", *[a for p in good if "15-" not in p for a in ("-f", p)])
    assert first.returncode == 0, first.stderr
    second = meshlet("apply", "-f", next(p for p in good if "15-" in p))
    assert second.returncode == 0, second.stderr
    assert "serviceentry.networking.istio.io/mysql-external created" in second.stdout
    bad = meshlet("apply", "-f", str(EXAMPLES / "16-canary-fragment.yaml"))
    assert bad.returncode == 1 and "spec.hosts: missing" in bad.stderr
    got = meshlet("get", "vs", "-A")
    assert got.returncode == 0 and "reviews-route" in got.stdout
