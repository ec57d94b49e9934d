"""The Bookinfo manifests load through meshlet's resource model and the local runtime's spec reader."""
from __future__ import annotations

from pathlib import Path

import yaml
from meshlet.controller.local.spec import DeploymentSpec
from meshlet.controller.model import to_obj
from meshlet.controller.model.loader import load_paths
from meshlet.e2e.scenarios.harness import BOOKINFO_DIR


def test_manifests_load_and_run_locally() -> None:
    resources = load_paths([str(BOOKINFO_DIR)])
    by_kind: dict[str, list[str]] = {}
    for r in resources:
        by_kind.setdefault(r.kind, []).append(f"{r.metadata.namespace or ''}/{r.metadata.name}")
    assert sorted(by_kind["Namespace"]) == ["/bookinfo", "/legacy"]
    assert sorted(by_kind["Service"]) == ["bookinfo/details", "bookinfo/productpage", "bookinfo/ratings",
                                          "bookinfo/reviews"]
    assert sorted(by_kind["Deployment"]) == [
        "bookinfo/details-v1", "bookinfo/productpage-v1", "bookinfo/ratings-v1", "bookinfo/reviews-v1",
        "bookinfo/reviews-v2", "bookinfo/reviews-v3", "bookinfo/sleep", "legacy/sleep"]
    for r in resources:
        if r.kind == "Deployment":
            spec = DeploymentSpec.from_obj(to_obj(r))
            assert spec.containers[0].argv[:2] == ("python", "-m")
            assert spec.containers[0].argv[2].startswith("meshlet.e2e.apps.")


def test_namespace_labels_and_versions() -> None:
    docs = [d for f in sorted(BOOKINFO_DIR.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    namespaces = {d["metadata"]["name"]: d["metadata"].get("labels", {}) for d in docs if d["kind"] == "Namespace"}
    assert namespaces["bookinfo"] == {"istio-injection": "enabled"}
    assert "istio-injection" not in namespaces["legacy"]
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("reviews-"):
            env = {e["name"]: e["value"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert env["SERVICE_VERSION"] == d["metadata"]["labels"]["version"]
            assert d["spec"]["template"]["spec"]["serviceAccountName"] == "bookinfo-reviews"
    # kubectl applies a directory in file-name order: the namespace file must come first
    assert min(p.name for p in Path(BOOKINFO_DIR).glob("*.yaml")) == "bookinfo-namespace.yaml"
