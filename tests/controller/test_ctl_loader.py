"""Manifest loading: files, directories, stdin, multi-document, defaults, collected errors."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from meshlet.controller.model import (
    Deployment,
    KindInfo,
    ManifestError,
    Namespace,
    Registry,
    Resource,
    Service,
    load_paths,
    load_text,
    yfield,
)
from meshlet.controller.model.kinds import KINDS

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  selector:
    app: reviews
  ports:
  - port: 9080
    name: http
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
  namespace: bookinfo
spec:
  selector:
    matchLabels: {app: reviews, version: v1}
  template:
    metadata:
      labels: {app: reviews, version: v1}
      annotations: {sidecar.istio.io/inject: "true"}
    spec:
      serviceAccountName: bookinfo-reviews
      containers:
      - name: reviews
        image: docker.io/istio/examples-bookinfo-reviews-v1:1.20.2
        imagePullPolicy: IfNotPresent
        env:
        - name: LOG_DIR
          value: "/tmp/logs"
        ports:
        - containerPort: 9080
        volumeMounts:
        - name: tmp
          mountPath: /tmp
        securityContext:
          runAsUser: 1000
      volumes:
      - name: tmp
        emptyDir: {}
"""


def test_multi_document_with_defaults() -> None:
    text = "---\n" + SERVICE + "---\n# only a comment\n---\n" + DEPLOYMENT + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo}\n"
    svc, deploy, ns = load_text(text)
    assert isinstance(svc, Service) and isinstance(deploy, Deployment) and isinstance(ns, Namespace)
    assert svc.metadata.namespace == "default"
    assert svc.spec.ports[0].protocol == "TCP"
    assert svc.spec.ports[0].target_port == 9080
    assert svc.spec.type == "ClusterIP" and svc.spec.cluster_ip is None
    assert deploy.metadata.namespace == "bookinfo"
    assert deploy.spec.replicas == 1
    assert deploy.spec.template.spec.service_account_name == "bookinfo-reviews"
    assert deploy.spec.template.spec.containers[0].env[0].value == "/tmp/logs"
    assert ns.metadata.namespace is None


def test_requested_namespace() -> None:
    (svc,) = load_text(SERVICE, namespace="team")
    assert svc.metadata.namespace == "team"
    with pytest.raises(ManifestError) as e:
        load_text(DEPLOYMENT, "d.yaml", namespace="team")
    assert str(e.value) == "d.yaml: document 1: metadata.namespace: 'bookinfo' does not match the requested namespace 'team'"
    (ns,) = load_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n", namespace="other")
    assert ns.metadata.namespace is None  # cluster-scoped


def test_pod_template_defaults_service_account() -> None:
    text = DEPLOYMENT.replace("      serviceAccountName: bookinfo-reviews\n", "")
    (deploy,) = load_text(text)
    assert deploy.spec.template.spec.service_account_name == "default"


def test_directory_and_files(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(DEPLOYMENT)
    (tmp_path / "a.yml").write_text(SERVICE)
    (tmp_path / "notes.txt").write_text("not yaml: [")
    resources = load_paths([str(tmp_path)])
    assert [r.kind for r in resources] == ["Service", "Deployment"]  # sorted by file name
    assert [r.kind for r in load_paths([str(tmp_path / "b.yaml")])] == ["Deployment"]


def test_stdin() -> None:
    resources = load_paths(["-"], stdin=io.StringIO(SERVICE))
    assert resources[0].metadata.name == "reviews"


def test_errors_of_all_documents_and_files_are_collected(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(SERVICE + "---\n" + SERVICE.replace("port: 9080", "port: abc"))
    (tmp_path / "two.yaml").write_text("apiVersion: v1\nkind: Servce\nmetadata: {name: x}\n")
    with pytest.raises(ManifestError) as e:
        load_paths([str(tmp_path / "one.yaml"), str(tmp_path / "two.yaml"), str(tmp_path / "missing.yaml")])
    assert [str(p) for p in e.value.problems] == [
        f"{tmp_path}/missing.yaml: no such file or directory",
        f"{tmp_path}/one.yaml: document 2: spec.ports[0].port: expected integer, got 'abc'",
        f"{tmp_path}/two.yaml: document 1: kind: unknown kind 'Servce' (apiVersion v1); did you mean 'Service'?",
    ]
    assert str(e.value).startswith("3 problems in manifests:\n  ")


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SERVICE + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: x\n   bad: indent\n")
    with pytest.raises(ManifestError) as e:
        load_paths([str(path)])
    (problem,) = e.value.problems
    assert problem.source == str(path) and problem.document == 2
    assert "line 16" in problem.message and "invalid YAML" in problem.message


def test_duplicate_keys_are_an_error() -> None:
    text = SERVICE + "  ports:\n  - port: 81\n"
    with pytest.raises(ManifestError) as e:
        load_text(text, "dup.yaml")
    assert str(e.value) == ("dup.yaml: document 1: line 11, column 3: invalid YAML: while constructing a mapping "
                            "found duplicate key 'ports' (first at line 8)")


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no \\*.yaml or \\*.yml files"):
        load_paths([str(tmp_path)])


def test_document_that_is_not_a_mapping() -> None:
    with pytest.raises(ManifestError) as e:
        load_text("- a\n- b\n", "list.yaml")
    assert str(e.value) == "list.yaml: document 1: expected a mapping (a resource), got a list"


@dataclass(frozen=True)
class MtlsSettings:
    mode: Literal["STRICT", "PERMISSIVE", "DISABLE"] = "PERMISSIVE"


@dataclass(frozen=True)
class PeerAuthenticationSpec:
    mtls: MtlsSettings | None = yfield(warn_aliases=("mTLS",), default=None)


@dataclass(frozen=True, kw_only=True)
class PeerAuthentication(Resource):
    api_version: ClassVar[str] = "security.istio.io/v1"
    kind: ClassVar[str] = "PeerAuthentication"

    spec: PeerAuthenticationSpec = field(default_factory=PeerAuthenticationSpec)


def test_a_new_kind_is_dataclasses_plus_one_registry_line() -> None:
    others = [k for k in KINDS if k.kind != "PeerAuthentication"]  # the real kind is registered since issue 3
    registry = Registry([*others, KindInfo(PeerAuthentication, "peerauthentications", ("pa",),
                                          extra_api_versions=("security.istio.io/v1beta1",))])
    text = "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: default}\n" \
           "spec:\n  mTLS:\n    mode: STRICT\n"
    warnings: list[str] = []
    (pa,) = load_text(text, "pa.yaml", registry=registry, warnings=warnings)
    assert isinstance(pa, PeerAuthentication) and pa.spec.mtls == MtlsSettings("STRICT")
    assert pa.metadata.namespace == "default"
    assert warnings == ["pa.yaml: document 1: spec.mTLS: 'mTLS' is accepted as a spelling of 'mtls'; "
                        "please write 'mtls'"]
    assert registry.resolve("pa").kind == "PeerAuthentication"
    assert type(load_text(text)[0]) is not PeerAuthentication  # the default registry has its own
