import datetime as dt
import os
import stat
from concurrent.futures import ProcessPoolExecutor

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from identity_helpers import ALICE, TD, make_csr
from meshlet.identity.certcheck import Status, verify_leaf
from meshlet.identity.csr import check_csr
from meshlet.identity.errors import CaError
from meshlet.identity.issuer import (
    cert_pem,
    ensure_ca,
    key_pem,
    load_ca,
    new_anchor,
    new_issuer,
)


def test_ensure_ca_creates_files_and_is_idempotent(tmp_path):
    d = tmp_path / "identity"
    ca = ensure_ca(d, TD)
    assert {p.name for p in d.iterdir() if not p.name.startswith(".")} == {"ca.crt", "ca.key", "issuer.crt", "issuer.key"}
    assert stat.S_IMODE(os.stat(d / "ca.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d / "issuer.key").st_mode) == 0o600
    again = ensure_ca(d, TD)
    assert again.anchors == ca.anchors and again.issuer_cert == ca.issuer_cert


def test_anchor_and_issuer_shape(tmp_path):
    ca = ensure_ca(tmp_path, TD)
    (anchor,) = ca.anchors
    for cert in (anchor, ca.issuer_cert):
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert anchor.not_valid_after_utc - anchor.not_valid_before_utc >= dt.timedelta(days=3650)
    assert ca.issuer_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    ca.issuer_cert.verify_directly_issued_by(anchor)


def _race(d: str) -> bytes:
    return cert_pem(ensure_ca(d, TD).anchors[0])


def test_concurrent_ensure_ca_agrees(tmp_path):
    with ProcessPoolExecutor(4) as pool:
        anchors = set(pool.map(_race, [str(tmp_path)] * 4))
    assert len(anchors) == 1


def test_leaf_has_exactly_the_san_and_24h(tmp_path):
    ca = ensure_ca(tmp_path, TD)
    csr, _ = check_csr(make_csr(), ALICE, TD)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    leaf = ca.sign_leaf(csr, ALICE, now=now)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [n.value for n in san] == [ALICE] and isinstance(next(iter(san)), x509.UniformResourceIdentifier)
    assert leaf.not_valid_after_utc - now == dt.timedelta(hours=24)
    assert now - leaf.not_valid_before_utc == dt.timedelta(seconds=20)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment and not ku.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert verify_leaf(leaf, [ca.issuer_cert], ca.anchors, expected_uri=ALICE).status is Status.OK


def test_leaf_verifies_with_cryptography_client_verifier(tmp_path):
    from cryptography.x509.verification import PolicyBuilder, Store

    ca = ensure_ca(tmp_path, TD)
    csr, _ = check_csr(make_csr(), ALICE, TD)
    leaf = ca.sign_leaf(csr, ALICE)
    verifier = PolicyBuilder().store(Store(list(ca.anchors))).build_client_verifier()
    verified = verifier.verify(leaf, [ca.issuer_cert])
    assert [n.value for n in verified.subjects] == [ALICE]


def test_leaf_of_other_ca_does_not_verify(tmp_path):
    ca = ensure_ca(tmp_path / "a", TD)
    other = ensure_ca(tmp_path / "b", TD)
    csr, _ = check_csr(make_csr(), ALICE, TD)
    leaf = other.sign_leaf(csr, ALICE)
    result = verify_leaf(leaf, [other.issuer_cert], ca.anchors)
    assert result.status is Status.ERROR and "no chain" in result.message


def test_load_ca_bring_your_own(tmp_path):
    anchor, anchor_key = new_anchor(TD)
    issuer, issuer_key = new_issuer(TD, anchor, anchor_key)
    (tmp_path / "a.pem").write_bytes(cert_pem(anchor))
    (tmp_path / "i.pem").write_bytes(cert_pem(issuer))
    (tmp_path / "i.key").write_bytes(key_pem(issuer_key))
    ca = load_ca(anchors=tmp_path / "a.pem", issuer_cert=tmp_path / "i.pem", issuer_key=tmp_path / "i.key", trust_domain=TD)
    assert ca.issuer_cert == issuer
    other_anchor, _ = new_anchor(TD)
    (tmp_path / "o.pem").write_bytes(cert_pem(other_anchor))
    with pytest.raises(CaError, match="not signed by any trust anchor"):
        load_ca(anchors=tmp_path / "o.pem", issuer_cert=tmp_path / "i.pem", issuer_key=tmp_path / "i.key", trust_domain=TD)
    (tmp_path / "bad.key").write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(CaError, match="does not match"):
        load_ca(anchors=tmp_path / "a.pem", issuer_cert=tmp_path / "i.pem", issuer_key=tmp_path / "bad.key", trust_domain=TD)
    with pytest.raises(CaError, match="cannot read"):
        load_ca(anchors=tmp_path / "missing.pem", issuer_cert=tmp_path / "i.pem", issuer_key=tmp_path / "i.key", trust_domain=TD)
