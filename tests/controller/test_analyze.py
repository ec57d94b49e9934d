"""`meshlet analyze`: the analyzers on in-memory snapshots, and the command over a real store and files."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from meshlet.controller.analyze.run import analyze, load_for_analysis
from meshlet.controller.analyze.snapshot import Snapshot
from meshlet.controller.cli.main import cli
from meshlet.controller.model import load_text
from meshlet.e2e.seeds import SEED_EXAMPLES

BOOKINFO = """\
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {app: reviews}
  ports: [{port: 9080, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: bookinfo}
spec:
  selector: {app: ratings}
  ports: [{port: 9080, name: http}]
""" + "".join(f"""\
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: reviews-{v}, namespace: bookinfo}}
spec:
  selector: {{matchLabels: {{app: reviews, version: {v}}}}}
  template:
    metadata: {{labels: {{app: reviews, version: {v}}}}}
    spec: {{containers: [{{name: reviews, image: reviews}}]}}
""" for v in ("v1", "v2")) + """\
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""

BROKEN = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  gateways: [mesh, istio-system/missing-gw]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews2}}]
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-dup, namespace: bookinfo}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  http:
  - name: first
    match: [{uri: {prefix: /a}}]
    route: [{destination: {host: ratings}}]
  - name: again
    match: [{uri: {prefix: /a}}]
    route: [{destination: {host: ratings}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: bookinfo}
spec:
  host: ratings
  subsets: [{name: v9, labels: {version: v9}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ghost, namespace: bookinfo}
spec: {host: ghost}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: bookinfo}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules: [{backendRefs: [{name: reviews-v9, port: 9080}]}]
"""

EXPECTED = [
    'Error [IST0101] (HTTPRoute bookinfo/split) Referenced service not found: "reviews-v9"',
    'Error [IST0101] (VirtualService bookinfo/reviews) Referenced gateway not found: "istio-system/missing-gw"',
    ('Error [IST0101] (VirtualService bookinfo/reviews) Referenced host not found: "reviews2" '
    "(did you mean 'reviews'?)"),
    ('Error [IST0101] (VirtualService bookinfo/reviews) Referenced host+subset in destinationrule not found: '
    '"reviews+v3" (subsets defined: v1, v2)'),
    ("Error [IST0109] (VirtualService bookinfo/reviews) The VirtualServices bookinfo/reviews,bookinfo/reviews-dup "
    "associated with mesh gateway define the same host reviews.bookinfo.svc.cluster.local which can lead to "
    "undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource."),
    ("Error [IST0109] (VirtualService bookinfo/reviews-dup) The VirtualServices bookinfo/reviews,bookinfo/reviews-dup "
    "associated with mesh gateway define the same host reviews.bookinfo.svc.cluster.local which can lead to "
    "undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource."),
    ("Warning [IST0174] (DestinationRule bookinfo/ghost) The host ghost defined in the DestinationRule does not "
    "match any services in the mesh."),
    ("Warning [IST0173] (DestinationRule bookinfo/ratings) The Subset v9 defined in the DestinationRule does not "
    "select any pods."),
    ("Warning [IST0130] (VirtualService bookinfo/reviews) VirtualService rule #2 not used "
    "(rule #1 before it matches every request)."),
    ("Warning [IST0130] (VirtualService bookinfo/reviews-dup) VirtualService rule again not used "
    "(all matches used by prior rules)."),
    ("Info [IST0131] (VirtualService bookinfo/reviews-dup) VirtualService rule again match #0 is not used "
    "(duplicate/overlapping match in rule first)."),
]


def lines(snap: Snapshot, namespaces: set[str] | None = None) -> list[str]:
    return [m.line() for m in analyze(snap, namespaces)]


def test_clean_bookinfo_has_no_messages() -> None:
    assert lines(Snapshot.of(load_text(BOOKINFO))) == []


def test_broken_configuration_gives_istio_codes() -> None:
    snap = Snapshot.of(load_text(BOOKINFO), load_text(BROKEN))  # the second layer overrides VS bookinfo/reviews
    assert lines(snap) == EXPECTED
    assert lines(snap, {"default"}) == []


def test_gateway_hosts_and_service_entries() -> None:
    text = ((SEED_EXAMPLES / "09-ingress-gateway.yaml").read_text() + "---\n"
            + (SEED_EXAMPLES / "15-egress-serviceentry.yaml").read_text() + """---
apiVersion: v1
kind: Service
metadata: {name: api-service}
spec: {selector: {app: api}, ports: [{port: 8080}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db.internal]
  gateways: [istio-system/ingress-gateway]
  tcp: [{route: [{destination: {host: mysql.external.com, port: {number: 3306}}}]}]
""")
    snap = Snapshot.of(load_text(text))
    assert lines(snap, {"istio-system"}) == [
        ("Warning [MLT0004] (Gateway istio-system/egress-gateway) server https on port 443 has protocol HTTPS but "
        "no tls settings (Istio rejects this); add tls.mode and a credentialName.")]
    assert lines(snap, {"default"}) == [
        ("Warning [IST0132] (VirtualService default/db) one or more host db.internal defined in VirtualService "
        "default/db not found in Gateway istio-system/ingress-gateway.")]


def test_seed_spellings_and_schema_errors_in_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((SEED_EXAMPLES / "16-canary-fragment.yaml").read_text() + "---\n"
                   + (SEED_EXAMPLES / "07-peer-authentication.yaml").read_text())
    resources, messages = load_for_analysis([str(bad)], None)
    assert [r.kind for r in resources] == ["PeerAuthentication", "PeerAuthentication"]
    found = [m.line() for m in messages]
    # without hosts it could be a delegate VirtualService; without a name it is nothing
    assert found[0] == (f"Error [IST0106] (VirtualService {bad} document 1) Schema validation error: metadata: "
                        "missing required field")
    assert any(line.startswith("Warning [MLT0001] (PeerAuthentication production/default) spec.mTLS: 'mTLS' is "
                               "accepted as a spelling of 'mtls'") for line in found)
    assert lines(Snapshot.of(resources), {"production"}) == [
        ("Warning [MLT0002] (PeerAuthentication production/default) portLevelMtls for port(s) 8080 has no effect "
        "without a selector (Istio rejects it); add spec.selector or drop portLevelMtls.")]


def run(state: Path, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--state-dir", str(state), *args], input=input)


def test_analyze_command_over_the_store_and_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert run(state, "apply", "-f", "-", input=BOOKINFO).exit_code == 0
    clean = run(state, "analyze", "-n", "bookinfo")
    assert clean.exit_code == 0, clean.output
    assert clean.output == "\u2714 No validation issues found when analyzing namespace: bookinfo.\n"
    assert run(state, "analyze", "-A").output == "\u2714 No validation issues found when analyzing all namespaces.\n"

    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    result = run(state, "analyze", "-f", str(broken), "-n", "bookinfo")
    assert result.exit_code == 79
    assert result.output.splitlines()[: len(EXPECTED)] == EXPECTED
    assert "Error: Analyzers found issues when analyzing namespace: bookinfo." in result.output
    assert run(state, "analyze", "-f", str(broken), "-n", "default").exit_code == 0  # other namespaces only

    as_json = run(state, "analyze", "-f", str(broken), "-n", "bookinfo", "-o", "json")
    data = json.loads(as_json.output[: as_json.output.rindex("]") + 1])
    assert data[0]["code"] == "IST0101" and data[0]["level"] == "Error"
    assert data[1]["origin"] == "VirtualService bookinfo/reviews" and data[1]["path"] == "spec.gateways"
    assert data[0]["path"] == "spec.rules[0].backendRefs[0]"

    # a warning alone does not fail the command; the store itself was not changed by analyze
    warn_only = tmp_path / "warn.yaml"
    warn_only.write_text(BOOKINFO.split("---\napiVersion: networking.istio.io/v1\nkind: VirtualService")[0]
                         .split("---\n", 1)[1].replace("name: v2, labels: {version: v2}", "name: v2, labels: {version: v7}"))
    result = run(state, "analyze", "-f", str(warn_only), "-n", "bookinfo")
    assert result.exit_code == 0 and "[IST0173]" in result.output, result.output
    assert run(state, "analyze", "-n", "bookinfo").exit_code == 0


def test_analyze_without_a_mesh_and_real_executable(tmp_path: Path) -> None:
    env = {**os.environ, "MESHLET_STATE_DIR": str(tmp_path / "none")}
    installed = shutil.which("meshlet")
    exe = [installed] if installed else [sys.executable, "-m", "meshlet.controller.cli.main"]
    files = tmp_path / "cfg"
    files.mkdir()
    (files / "bookinfo.yaml").write_text(BOOKINFO)
    (files / "zz-broken.yaml").write_text(BROKEN)
    done = subprocess.run([*exe, "analyze", "-f", str(files), "-n", "bookinfo"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 79, done.stderr
    assert done.stdout.splitlines() == EXPECTED
    assert not (tmp_path / "none").exists()  # analyze never creates a store


def test_hints_for_hosts_with_a_namespace_suffix() -> None:
    vs = BOOKINFO.split("---\napiVersion: networking.istio.io/v1\nkind: VirtualService")[0] + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other, namespace: default}
spec:
  hosts: [ratings.bookinfo.svc.cluster.local]
  http: [{route: [{destination: {host: reviews.bookinfo}}]}]
"""
    assert lines(Snapshot.of(load_text(vs))) == [
        ('Error [IST0101] (VirtualService default/other) Referenced host not found: "reviews.bookinfo" (write '
        'reviews.bookinfo.svc.cluster.local: a name with a dot is taken as a full host name)')]
