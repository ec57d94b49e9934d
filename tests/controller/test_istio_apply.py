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
from meshlet.e2e.seeds import SEED_EXAMPLES

EXAMPLES = SEED_EXAMPLES
if not EXAMPLES.is_dir():
    EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "examples"

# The seed's examples live in istio-system and production besides default (on a cluster with Istio
# those namespaces exist already) and route to hosts of the sample apps: apply refuses routes to hosts
# nothing defines, so the environment has those Services.
NAMESPACES = """\
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: production}
""" + "".join(f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec: {{selector: {{app: {name}}}, ports: [{{port: {port}, name: http}}]}}
""" for name, ns, port in [("reviews", "default", 9080), ("ratings", "default", 9080), ("httpbin", "default", 8000),
                           ("myapp", "default", 8080), ("api-service", "default", 8080),
                           ("istio-egressgateway", "istio-system", 443)])


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
            assert "metadata: missing required field" in result.output  # without hosts alone: a delegate
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
    header, *rows = run(state, "get", "vs").output.splitlines()
    assert header.split() == ["NAME", "GATEWAYS", "HOSTS", "AGE"]
    assert any(r.split()[:3] == ["api-virtualservice", '["istio-system/ingress-gateway"]', '["api.example.com"]']
               for r in rows)
    assert run(state, "get", "se").output.splitlines()[1].split()[:4] == [
        "mysql-external", '["mysql.external.com"]', "MESH_EXTERNAL", "DNS"]
    assert run(state, "get", "pa", "-n", "production").output.splitlines()[1].split()[:2] == ["default", "STRICT"]
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
""" + "".join(f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: reviews-{v}}}\nspec: {{ports: [{{port: 9080}}]}}\n"
              for v in ("v1", "v2"))
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
        return subprocess.run([*exe, *args], env=env, capture_output=True, text=True, timeout=120, input=input,
                              check=False)

    assert meshlet("apply", "-f", "-", input=NAMESPACES).returncode == 0
    good = [str(p) for p in sorted(EXAMPLES.glob("*.yaml")) if not p.name.startswith("16-")]
    # 10 and 15 both define istio-system/egress-gateway: apply them in two requests, as a user would
    first = meshlet("apply", *[a for p in good if "15-" not in p for a in ("-f", p)])
    assert first.returncode == 0, first.stderr
    second = meshlet("apply", "-f", next(p for p in good if "15-" in p))
    assert second.returncode == 0, second.stderr
    assert "serviceentry.networking.istio.io/mysql-external created" in second.stdout
    bad = meshlet("apply", "-f", str(EXAMPLES / "16-canary-fragment.yaml"))
    assert bad.returncode == 1 and "metadata: missing required field" in bad.stderr
    got = meshlet("get", "vs", "-A")
    assert got.returncode == 0 and "reviews-route" in got.stdout


def test_apply_refuses_routes_to_missing_hosts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    vs = (EXAMPLES / "01-reviews-route.yaml").read_text()
    result = run(state, "apply", "-f", "-", input=vs)
    assert result.exit_code == 1
    assert ('error: virtualservice.networking.istio.io/reviews-route: spec.http[0].route[0].destination.host: '
            'Referenced host not found: "reviews" (no Service or ServiceEntry defines it; apply it first or in the '
            'same request) [IST0101]') in result.output
    assert run(state, "get", "vs").exit_code != 0 or "reviews-route" not in run(state, "get", "vs").output
    # the Service in the same request is enough; the undefined subset v3 and the rule after the catch-all warn
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec: {ports: [{port: 9080}]}\n---\n"
    result = run(state, "apply", "-f", "-", input=svc + vs)
    assert result.exit_code == 0, result.output
    assert ('Warning: virtualservice.networking.istio.io/reviews-route: spec.http[1].route[0].destination.subset: '
            'Referenced host+subset in destinationrule not found: "reviews+v1" (no DestinationRule defines subsets '
            'for this host) [IST0101]') in result.output
    assert "spec.http[2]: VirtualService rule #2 not used (rule #1 before it matches every request). [IST0130]" \
        in result.output
    # a gateway that does not exist; --validate=warn applies anyway
    gw_vs = (EXAMPLES / "09-ingress-gateway.yaml").read_text().split("---\n")[1]
    result = run(state, "apply", "-f", "-", input=svc.replace("reviews", "api-service") + gw_vs)
    assert result.exit_code == 1 and 'spec.gateways: Referenced gateway not found: "istio-system/ingress-gateway"' \
        in result.output
    result = run(state, "apply", "--validate", "warn", "-f", "-", input=gw_vs)
    assert result.exit_code == 0 and "Warning: virtualservice.networking.istio.io/api-virtualservice: spec.gateways" \
        in result.output
