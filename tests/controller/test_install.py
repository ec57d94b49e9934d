"""`meshlet install` / `uninstall` and the generated control-plane chart (pure: no cluster).

The real path (helm template/lint/install and kubectl-style apply against a real
kube-apiserver) is in tests/kube/test_install_*.py.
"""
from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from meshlet.controller.cli.install import install, render_control_plane, uninstall
from meshlet.controller.cli.install_certs import (
    IdentityFiles,
    fill_certificates,
    webhook_dns_names,
)
from meshlet.controller.cli.install_chart import default_chart_dir, stale_files
from meshlet.controller.cli.install_values import (
    InstallError,
    apply_sets,
    default_values,
    parse_set,
    validate,
    values_yaml,
)
from meshlet.identity.certcheck import Status, check_ca_pem
from meshlet.identity.issuer import cert_pem, key_pem, new_anchor, new_issuer


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def _by(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_committed_chart_is_generated_from_the_install_code() -> None:
    assert stale_files(default_chart_dir()) == [], "run `make chart`"


def test_values_yaml_documents_every_default() -> None:
    assert yaml.safe_load(values_yaml()) == default_values()
    validate(default_values())


def test_set_is_typed_like_helm_and_validated() -> None:
    assert parse_set("injector.replicas=3") == ("injector.replicas", 3)
    assert parse_set("image.tag=") == ("image.tag", "")
    assert parse_set("injector.nativeSidecar=on") == ("injector.nativeSidecar", "on")
    assert parse_set("a=true") == ("a", True)
    values = apply_sets(default_values(), ["injector.failurePolicy=Fail", "image.tag=dev"])
    validate(values)
    with pytest.raises(InstallError, match="injector.replicas' must be an integer"):
        validate(apply_sets(default_values(), ["injector.replicas=three"]))
    with pytest.raises(InstallError, match="unknown value 'injectr.replicas'"):
        validate(apply_sets(default_values(), ["injectr.replicas=1"]))
    with pytest.raises(InstallError, match="expected key=value"):
        parse_set("novalue")


def test_install_renders_the_control_plane_with_generated_certificates() -> None:
    result = CliRunner().invoke(install, ["-n", "mesh-a", "--set", "injector.failurePolicy=Fail"])
    assert result.exit_code == 0, result.output
    docs = _docs(result.output)
    assert docs[0] == {**docs[0], "kind": "Namespace"} and docs[0]["metadata"]["name"] == "mesh-a"
    for c in ("destination", "identity", "injector"):
        dep = _by(docs, "Deployment", f"meshlet-{c}")
        assert dep["metadata"]["namespace"] == "mesh-a"
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == f"meshlet-{c}"
        _by(docs, "Service", f"meshlet-{c}")
        _by(docs, "ServiceAccount", f"meshlet-{c}")
        binding = _by(docs, "ClusterRoleBinding", f"meshlet-mesh-a-{c}")
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"meshlet-{c}", "namespace": "mesh-a"}]
    secret = _by(docs, "Secret", "meshlet-identity-issuer")
    pem = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    checks = check_ca_pem(pem["ca.crt"], pem["tls.crt"])
    assert all(c.status is Status.OK for c in checks), checks
    roots = _by(docs, "ConfigMap", "meshlet-identity-trust-roots")
    assert roots["data"]["ca-bundle.crt"].encode() == pem["ca.crt"]

    hook = _by(docs, "MutatingWebhookConfiguration", "meshlet-mesh-a-proxy-injector")["webhooks"][0]
    assert hook["failurePolicy"] == "Fail"
    assert hook["clientConfig"]["service"] == {"name": "meshlet-injector", "namespace": "mesh-a", "path": "/inject", "port": 443}
    excluded = hook["namespaceSelector"]["matchExpressions"][0]
    assert excluded["operator"] == "NotIn" and "mesh-a" in excluded["values"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    tls = _by(docs, "Secret", "meshlet-injector-k8s-tls")["data"]
    serving = x509.load_pem_x509_certificate(base64.b64decode(tls["tls.crt"]))
    serving.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == webhook_dns_names("mesh-a")
    assert serving.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)


def test_install_brings_your_own_identity(tmp_path: Path) -> None:
    anchor, anchor_key = new_anchor("example.org")
    issuer, issuer_key = new_issuer("example.org", anchor, anchor_key)
    (tmp_path / "ca.crt").write_bytes(cert_pem(anchor))
    (tmp_path / "issuer.crt").write_bytes(cert_pem(issuer))
    (tmp_path / "issuer.key").write_bytes(key_pem(issuer_key))
    args = ["--identity-trust-anchors-file", str(tmp_path / "ca.crt"),
            "--identity-issuer-certificate-file", str(tmp_path / "issuer.crt"),
            "--identity-issuer-key-file", str(tmp_path / "issuer.key"), "--set", "trustDomain=example.org",
            "--values-out", str(tmp_path / "values.yaml")]
    result = CliRunner().invoke(install, args)
    assert result.exit_code == 0, result.output
    secret = _by(_docs(result.output), "Secret", "meshlet-identity-issuer")
    assert base64.b64decode(secret["data"]["ca.crt"]) == cert_pem(anchor)
    assert base64.b64decode(secret["data"]["tls.crt"]) == cert_pem(issuer)
    saved = yaml.safe_load((tmp_path / "values.yaml").read_text())
    assert saved["identity"]["trustAnchorsPEM"] == cert_pem(anchor).decode()
    # the saved values render the same objects again (what `make install` hands to helm)
    assert render_control_plane(saved, "meshlet") == _docs(result.output)

    other_anchor, _ = new_anchor("example.org")
    (tmp_path / "other.crt").write_bytes(cert_pem(other_anchor))
    bad = CliRunner().invoke(install, [args[0], str(tmp_path / "other.crt"), *args[2:]])
    assert bad.exit_code == 1
    assert "issuer certificate is not signed by any trust anchor" in bad.output

    partial = CliRunner().invoke(install, args[:2])
    assert partial.exit_code == 1 and "must be given together" in partial.output


def test_required_values_are_named() -> None:
    values = fill_certificates(default_values(), "meshlet", IdentityFiles())
    values["identity"]["issuer"]["tls"]["keyPEM"] = ""
    with pytest.raises(InstallError, match="identity.issuer.tls.keyPEM is required"):
        render_control_plane(values, "meshlet")


def test_install_crds_prints_the_crds_chart() -> None:
    result = CliRunner().invoke(install, ["--crds"])
    assert result.exit_code == 0, result.output
    kinds = {d["kind"] for d in _docs(result.output)}
    assert kinds == {"CustomResourceDefinition"}
    names = {d["metadata"]["name"] for d in _docs(result.output)}
    assert "virtualservices.networking.istio.io" in names


def test_uninstall_lists_cluster_scoped_objects_and_keeps_crds() -> None:
    result = CliRunner().invoke(uninstall, ["-n", "mesh-b"])
    assert result.exit_code == 0, result.output
    docs = _docs(result.output)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("MutatingWebhookConfiguration", "meshlet-mesh-b-proxy-injector") in names
    assert ("ClusterRole", "meshlet-mesh-b-identity") in names
    assert ("Namespace", "mesh-b") in names
    assert not any(d["kind"] == "CustomResourceDefinition" for d in docs)
    assert "kubectl delete crd virtualservices.networking.istio.io" in result.output
