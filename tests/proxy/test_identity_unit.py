import datetime as dt
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshlet.proxy.config import ConfigError, ProxyConfig
from meshlet.proxy.errors import IdentityError, error_response
from meshlet.proxy.identity import _CryptographyKey, build_csr, generate_key, material_from
from meshlet.proxy.tlsctx import memfile, peer_id

ID = "spiffe://cluster.local/ns/demo/sa/web"


def public_key(key):  # noqa: ANN001, ANN201
    return serialization.load_pem_private_key(key.private_pem(), None).public_key()


@pytest.mark.parametrize("make_key", [generate_key, _CryptographyKey], ids=["libcrypto", "cryptography"])
def test_csr_has_only_the_identity_san(make_key) -> None:  # noqa: ANN001
    key = make_key()
    csr = x509.load_pem_x509_csr(build_csr(key, ID))
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [ID]
    assert san.get_values_for_type(x509.DNSName) == []
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
    assert csr.public_key().curve.name == "secp256r1"


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return key, cert


def _sign(ca_key, ca_cert, public_key, uri: str) -> bytes:  # noqa: ANN001
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca_cert.subject)
            .public_key(public_key).serial_number(2).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=24))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def test_material_builds_contexts_from_memory() -> None:
    ca_key, ca = _ca()
    key = generate_key()
    trust = ca.public_bytes(serialization.Encoding.PEM)
    mat = material_from(key, ID, _sign(ca_key, ca, public_key(key), ID), [], trust)
    assert mat.uri == ID
    assert mat.server_ctx.verify_mode == ssl.CERT_REQUIRED
    assert mat.client_ctx.check_hostname is False
    assert mat.renew_at(0.7) < mat.not_after
    assert mat.dump()["cert_pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert abs(mat.not_after - mat.not_before - 24 * 3600 - 60) < 2
    import hashlib
    assert mat.trust_fingerprint == hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).hexdigest()


def test_csr_refuses_identities_that_could_inject_sans() -> None:
    with pytest.raises(ValueError, match="plain spiffe"):
        generate_key().csr(ID + ",DNS:evil.example")


def test_material_refuses_wrong_key_or_identity() -> None:
    ca_key, ca = _ca()
    key = generate_key()
    trust = ca.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(IdentityError, match="not for our key"):
        material_from(key, ID, _sign(ca_key, ca, public_key(generate_key()), ID), [], trust)
    with pytest.raises(IdentityError, match="expected"):
        material_from(key, ID, _sign(ca_key, ca, public_key(key), ID + "x"), [], trust)
    with pytest.raises(IdentityError, match="unreadable"):
        material_from(key, ID, b"garbage", [], trust)


def test_memfile_is_anonymous() -> None:
    import os

    with memfile(b"secret", "meshlet-key") as path:
        assert open(path, "rb").read() == b"secret"
        assert "memfd:" in os.readlink(path)


def test_peer_id() -> None:
    assert peer_id({"subjectAltName": (("URI", ID),)}) == ID
    assert peer_id({"subjectAltName": (("URI", ID), ("URI", ID + "2"))}) == ""
    assert peer_id({"subjectAltName": (("DNS", "x"),)}) == ""
    assert peer_id(None) == ""


def test_config_from_env() -> None:
    cfg = ProxyConfig.from_env({
        "MESHLET_PROXY_IDENTITY": ID, "MESHLET_PROXY_TOKEN_FILE": "/t", "MESHLET_PROXY_TRUST_ANCHORS": "/ca",
        "MESHLET_PROXY_IDENTITY_ADDR": "198.18.0.1:8080", "MESHLET_PROXY_DESTINATION_ADDR": "198.18.0.1:8086",
        "MESHLET_PROXY_NAMESPACE": "demo", "MESHLET_PROXY_POD": "web-1", "MESHLET_PROXY_POD_IP": "198.18.0.5",
    })
    assert cfg.identity_addr == ("198.18.0.1", 8080) and cfg.destination_addr == ("198.18.0.1", 8086)
    assert cfg.pod == "web-1" and cfg.log_level == "info"
    assert ProxyConfig.from_env({}).identity == ""
    with pytest.raises(ConfigError, match="MESHLET_PROXY_TOKEN_FILE"):
        ProxyConfig.from_env({"MESHLET_PROXY_IDENTITY": ID})
    with pytest.raises(ConfigError, match="MESHLET_PROXY_DESTINATION_ADDR"):
        ProxyConfig.from_env({"MESHLET_PROXY_DESTINATION_ADDR": "nope"})
    with pytest.raises(ConfigError, match="spiffe"):
        ProxyConfig.from_env({"MESHLET_PROXY_IDENTITY": "web"})


def test_error_response_is_marked() -> None:
    raw = error_response(503, "no endpoints\r\nInjected: x", close=False)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable")
    assert b"meshlet-proxy-error: no endpoints  Injected: x" in head
    assert b"connection: close" not in head
    assert body == b"no endpoints  Injected: x\n"
