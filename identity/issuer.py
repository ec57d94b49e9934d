"""Trust anchor and issuer: create or load them, sign workload leaf certificates.

The trust anchor is a self-signed ECDSA P-256 CA (10 years); the issuer is an
intermediate CA signed by it (ECDSA P-256, 1 year, pathlen 0) that signs the
24-hour leaf certificates of proxies. `ensure_ca` creates them on first start
in a directory and loads them afterwards; it is safe when several processes
call it at once (an exclusive lock around create-or-load, files written to a
temporary name and renamed).
"""
from __future__ import annotations

import datetime as dt
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import CaError

ANCHOR_LIFETIME = dt.timedelta(days=3650)
ISSUER_LIFETIME = dt.timedelta(days=365)
LEAF_LIFETIME = dt.timedelta(hours=24)
BACKDATE = dt.timedelta(seconds=20)
"""Leaf `notBefore` lies this far in the past, for peers whose clocks lag."""

ANCHOR_FILE, ANCHOR_KEY_FILE = "ca.crt", "ca.key"
ISSUER_FILE, ISSUER_KEY_FILE = "issuer.crt", "issuer.key"


@dataclass(frozen=True)
class CA:
    """Trust anchors plus the issuer that signs leaf certificates."""

    trust_domain: str
    anchors: tuple[x509.Certificate, ...]
    issuer_cert: x509.Certificate
    issuer_key: ec.EllipticCurvePrivateKey

    @property
    def anchors_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.anchors)

    @property
    def issuer_der(self) -> bytes:
        return self.issuer_cert.public_bytes(serialization.Encoding.DER)

    def sign_leaf(
        self,
        csr: x509.CertificateSigningRequest,
        identity: str,
        *,
        now: dt.datetime | None = None,
        lifetime: dt.timedelta = LEAF_LIFETIME,
    ) -> x509.Certificate:
        """Sign a leaf for the (already checked) CSR whose only SAN is `identity`."""
        now = now or _now()
        not_after = min(now + lifetime, self.issuer_cert.not_valid_after_utc)
        key = csr.public_key()
        issuer_ski = self.issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.issuer_cert.subject)
            .public_key(key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)  # type: ignore[arg-type]
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False)
        )
        return builder.sign(self.issuer_key, hashes.SHA256())


def ensure_ca(directory: str | os.PathLike[str], trust_domain: str) -> CA:
    """Load the CA from `directory`, creating anchor and issuer there first if absent."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(d / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (d / ANCHOR_FILE).exists():
                _create(d, trust_domain)
            return load_ca(
                anchors=d / ANCHOR_FILE,
                issuer_cert=d / ISSUER_FILE,
                issuer_key=d / ISSUER_KEY_FILE,
                trust_domain=trust_domain,
            )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_ca(
    *,
    anchors: str | os.PathLike[str],
    issuer_cert: str | os.PathLike[str],
    issuer_key: str | os.PathLike[str],
    trust_domain: str,
) -> CA:
    """Load a CA from PEM files (bring your own); CaError says which file is wrong."""
    return ca_from_pem(
        anchors_pem=_read(Path(anchors), "certificate"),
        issuer_pem=_read(Path(issuer_cert), "certificate"),
        key_pem=_read(Path(issuer_key), "key"),
        trust_domain=trust_domain,
        sources=(str(anchors), str(issuer_cert), str(issuer_key)),
    )


def ca_from_pem(
    *,
    anchors_pem: bytes,
    issuer_pem: bytes,
    key_pem: bytes,
    trust_domain: str,
    sources: tuple[str, str, str] = ("trust anchors", "issuer certificate", "issuer key"),
    now: dt.datetime | None = None,
) -> CA:
    """Build a CA from PEM bytes (pure); CaError names the source (`sources`: anchors, cert, key) at fault.

    Checks: each part parses; the key is EC P-256 and matches the issuer
    certificate; the issuer is signed by one of the anchors; the issuer is
    valid now.
    """
    anchors_src, issuer_src, key_src = sources
    anchor_certs = tuple(_parse_certs(anchors_pem, anchors_src))
    issuer = _parse_certs(issuer_pem, issuer_src)[0]
    key = _parse_key(key_pem, key_src)
    if issuer.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise CaError(f"{key_src}: private key does not match the issuer certificate {issuer_src}")
    if not any(_issued_by(issuer, a) for a in anchor_certs):
        raise CaError(f"{issuer_src}: issuer certificate is not signed by any trust anchor in {anchors_src}")
    now = now or _now()
    if issuer.not_valid_after_utc <= now:
        raise CaError(f"{issuer_src}: issuer certificate expired at {issuer.not_valid_after_utc.isoformat()}")
    if issuer.not_valid_before_utc > now + BACKDATE:
        raise CaError(f"{issuer_src}: issuer certificate is not valid before "
                      f"{issuer.not_valid_before_utc.isoformat()}")
    return CA(trust_domain=trust_domain, anchors=anchor_certs, issuer_cert=issuer, issuer_key=key)


def new_anchor(trust_domain: str, *, now: dt.datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"root.{trust_domain}")])
    cert = (
        _ca_builder(name, name, key.public_key(), now, ANCHOR_LIFETIME, path_length=None)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def new_issuer(
    trust_domain: str,
    anchor: x509.Certificate,
    anchor_key: ec.EllipticCurvePrivateKey,
    *,
    now: dt.datetime | None = None,
    lifetime: dt.timedelta = ISSUER_LIFETIME,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"identity.{trust_domain}")])
    anchor_ski = anchor.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        _ca_builder(name, anchor.subject, key.public_key(), now, lifetime, path_length=0)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(anchor_ski), critical=False)
        .sign(anchor_key, hashes.SHA256())
    )
    return cert, key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _create(d: Path, trust_domain: str) -> None:
    anchor, anchor_key = new_anchor(trust_domain)
    issuer, issuer_key = new_issuer(trust_domain, anchor, anchor_key)
    # ca.crt last: its presence means the set is complete.
    _write_atomic(d / ANCHOR_KEY_FILE, key_pem(anchor_key), 0o600)
    _write_atomic(d / ISSUER_KEY_FILE, key_pem(issuer_key), 0o600)
    _write_atomic(d / ISSUER_FILE, cert_pem(issuer), 0o644)
    _write_atomic(d / ANCHOR_FILE, cert_pem(anchor), 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: dt.datetime,
    lifetime: dt.timedelta,
    *,
    path_length: int | None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CaError(f"{path}: cannot read {what}: {e.strerror}") from None


def _parse_certs(data: bytes, source: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise CaError(f"{source}: not a PEM certificate file: {e}") from None
    if not certs:
        raise CaError(f"{source}: no certificate found")
    return certs


def _parse_key(data: bytes, source: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise CaError(f"{source}: not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CaError(f"{source}: issuer key must be EC P-256")
    return key


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
