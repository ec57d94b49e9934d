"""Throw-away PKI for the nginx and haproxy sidecar pairs (the meshlet pair gets
its certificates from meshlet's own identity service).

One ECDSA P-256 root, and one leaf per side with a SPIFFE-style URI SAN, like
the mesh's workload certificates, so the TLS work per handshake is comparable.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class LeafFiles:
    cert: Path
    key: Path
    chain: Path
    """Leaf followed by nothing else (the root is the trust anchor, not sent)."""


@dataclass(frozen=True)
class Pki:
    ca: Path
    client: LeafFiles
    server: LeafFiles


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _leaf(
    directory: Path, name: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *, dns: str, uri: str
) -> LeafFiles:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns), x509.UniformResourceIdentifier(uri)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    # haproxy wants certificate and key in one file.
    chain = directory / f"{name}.pem"
    chain.write_bytes(cert_path.read_bytes() + key_path.read_bytes())
    chain.chmod(0o600)
    return LeafFiles(cert=cert_path, key=key_path, chain=chain)


def generate(directory: Path, trust_domain: str = "bench.local") -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("meshlet bench root"))
        .issuer_name(_name("meshlet bench root"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return Pki(
        ca=ca_path,
        client=_leaf(directory, "client", ca_cert, ca_key, dns="client.bench", uri=f"spiffe://{trust_domain}/ns/bench/sa/client"),
        server=_leaf(directory, "server", ca_cert, ca_key, dns="server.bench", uri=f"spiffe://{trust_domain}/ns/bench/sa/server"),
    )
