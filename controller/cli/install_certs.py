"""Certificates `meshlet install` fills in when the user brings none.

The identity trust anchor and issuer are made exactly as local mode makes them
(`meshlet.identity.issuer`: ECDSA P-256 anchor for 10 years, issuer CA for 1
year). Bring-your-own files are loaded with `load_ca`, which checks that the
key matches and the issuer chains to an anchor. The injector's webhook serving
certificate comes from its own small CA (the webhook's caBundle) with the
Service's DNS names.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from meshlet.identity.errors import CaError
from meshlet.identity.issuer import cert_pem, key_pem, load_ca, new_anchor, new_issuer

from .install_values import InstallError, get_path, set_path

WEBHOOK_LIFETIME = dt.timedelta(days=365)


@dataclass(frozen=True)
class IdentityFiles:
    """Bring-your-own identity files (all three, or none)."""

    trust_anchors: Path | None = None
    issuer_cert: Path | None = None
    issuer_key: Path | None = None

    @property
    def given(self) -> bool:
        return any((self.trust_anchors, self.issuer_cert, self.issuer_key))


def fill_certificates(values: dict[str, Any], namespace: str, files: IdentityFiles) -> dict[str, Any]:
    """`values` with the identity and webhook PEMs set: from `files`, kept if already set, else generated."""
    out = dict(values)
    trust_domain = str(get_path(values, "trustDomain"))
    if files.given:
        if not (files.trust_anchors and files.issuer_cert and files.issuer_key):
            raise InstallError("--identity-trust-anchors-file, --identity-issuer-certificate-file and "
                               "--identity-issuer-key-file must be given together")
        try:
            ca = load_ca(anchors=files.trust_anchors, issuer_cert=files.issuer_cert,
                         issuer_key=files.issuer_key, trust_domain=trust_domain)
        except CaError as e:
            raise InstallError(str(e)) from None
        set_path(out, "identity.trustAnchorsPEM", ca.anchors_pem.decode())
        set_path(out, "identity.issuer.tls.crtPEM", cert_pem(ca.issuer_cert).decode())
        set_path(out, "identity.issuer.tls.keyPEM", key_pem(ca.issuer_key).decode())
    elif not _all_set(values, "identity.trustAnchorsPEM", "identity.issuer.tls.crtPEM", "identity.issuer.tls.keyPEM"):
        anchor, anchor_key = new_anchor(trust_domain)
        issuer, issuer_key = new_issuer(trust_domain, anchor, anchor_key)
        set_path(out, "identity.trustAnchorsPEM", cert_pem(anchor).decode())
        set_path(out, "identity.issuer.tls.crtPEM", cert_pem(issuer).decode())
        set_path(out, "identity.issuer.tls.keyPEM", key_pem(issuer_key).decode())
    if not _all_set(values, "injector.tls.caPEM", "injector.tls.crtPEM", "injector.tls.keyPEM"):
        ca_pem, crt_pem, k_pem = webhook_certificate(namespace)
        set_path(out, "injector.tls.caPEM", ca_pem)
        set_path(out, "injector.tls.crtPEM", crt_pem)
        set_path(out, "injector.tls.keyPEM", k_pem)
    return out


def _all_set(values: dict[str, Any], *paths: str) -> bool:
    return all(get_path(values, p) for p in paths)


def webhook_dns_names(namespace: str, service: str = "meshlet-injector") -> list[str]:
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def webhook_certificate(namespace: str, *, now: dt.datetime | None = None) -> tuple[str, str, str]:
    """(CA PEM, serving certificate PEM, serving key PEM) for the injector Service in `namespace`."""
    now = now or dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"meshlet-injector-ca.{namespace}")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + WEBHOOK_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = webhook_dns_names(namespace)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + WEBHOOK_LIFETIME)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert_pem(ca).decode(), cert_pem(leaf).decode(), key_pem(key).decode()
