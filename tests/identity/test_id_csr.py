import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from identity_helpers import ALICE, BOB, TD, make_csr, rsa_key
from meshlet.identity.csr import check_csr
from meshlet.identity.errors import InvalidCsr, InvalidIdentity


def test_good_csr_is_accepted():
    csr, who = check_csr(make_csr(), ALICE, TD)
    assert (who.namespace, who.service_account) == ("shop", "alice")
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)


def test_rsa_key_is_rejected():
    with pytest.raises(InvalidCsr, match="EC P-256"):
        check_csr(make_csr(key=rsa_key()), ALICE, TD)


def test_other_curve_is_rejected():
    with pytest.raises(InvalidCsr, match="secp384r1"):
        check_csr(make_csr(key=ec.generate_private_key(ec.SECP384R1())), ALICE, TD)


def test_extra_uri_san_is_rejected():
    pem = make_csr([x509.UniformResourceIdentifier(ALICE), x509.UniformResourceIdentifier(BOB)])
    with pytest.raises(InvalidCsr, match="exactly one SAN"):
        check_csr(pem, ALICE, TD)


@pytest.mark.parametrize(
    "extra",
    [x509.DNSName("alice.shop.svc"), x509.IPAddress(ipaddress.ip_address("198.18.0.9"))],
)
def test_dns_or_ip_san_is_rejected(extra):
    with pytest.raises(InvalidCsr, match="DNS or IP"):
        check_csr(make_csr([x509.UniformResourceIdentifier(ALICE), extra]), ALICE, TD)


def test_missing_san_is_rejected():
    with pytest.raises(InvalidCsr, match="no subjectAltName"):
        check_csr(make_csr([]), ALICE, TD)


def test_wrong_identity_is_rejected():
    with pytest.raises(InvalidCsr, match="does not equal the requested identity"):
        check_csr(make_csr(identity=BOB), ALICE, TD)


@pytest.mark.parametrize("pem", [b"", b"garbage", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"])
def test_garbage_pem_is_rejected(pem):
    with pytest.raises(InvalidCsr):
        check_csr(pem, ALICE, TD)


@pytest.mark.parametrize(
    "identity, problem",
    [
        ("https://cluster.local/ns/a/sa/b", "not a SPIFFE id"),
        ("spiffe://other.domain/ns/a/sa/b", "trust domain"),
        ("spiffe://cluster.local/ns/a/b", "must have the form"),
        ("spiffe://cluster.local/ns/A_B/sa/b", "namespace"),
        ("spiffe://cluster.local/ns/a/sa/", "service account"),
    ],
)
def test_requested_identity_must_be_ours(identity, problem):
    with pytest.raises(InvalidIdentity, match=problem):
        check_csr(make_csr(identity=identity), identity, TD)
