"""Checks of a proxy's certificate signing request (pure, no I/O).

A CSR is accepted only when it is a valid PKCS#10 request, self-signed by an
EC P-256 key, and asks for exactly one SAN: the URI of the requested identity.
"""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID

from .errors import InvalidCsr
from .spiffe import WorkloadIdentity, parse_spiffe_id

MAX_CSR_BYTES = 16 * 1024


def check_csr(pem: bytes, identity: str, trust_domain: str) -> tuple[x509.CertificateSigningRequest, WorkloadIdentity]:
    """Parse and validate `pem` for `identity`; InvalidCsr/InvalidIdentity name the problem."""
    workload = parse_spiffe_id(identity, trust_domain)
    if not pem:
        raise InvalidCsr("CSR is empty")
    if len(pem) > MAX_CSR_BYTES:
        raise InvalidCsr(f"CSR is too large ({len(pem)} bytes, at most {MAX_CSR_BYTES})")
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError:
        raise InvalidCsr("CSR is not a PEM-encoded PKCS#10 certificate request") from None
    try:
        signature_ok = csr.is_signature_valid
    except Exception as e:  # noqa: BLE001 - unsupported algorithms raise various errors
        raise InvalidCsr(f"CSR signature cannot be checked: {e}") from None
    if not signature_ok:
        raise InvalidCsr("CSR signature is not valid")
    try:
        key = csr.public_key()
    except Exception as e:  # noqa: BLE001
        raise InvalidCsr(f"CSR public key cannot be read: {e}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidCsr(f"CSR key must be EC P-256, got {_describe(key)}")
    if not isinstance(key.curve, ec.SECP256R1):
        raise InvalidCsr(f"CSR key must be EC P-256 (secp256r1), got curve {key.curve.name}")
    _check_san(csr, identity)
    return csr, workload


def _check_san(csr: x509.CertificateSigningRequest, identity: str) -> None:
    try:
        ext = csr.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        raise InvalidCsr(f"CSR has no subjectAltName; it must have exactly one URI SAN {identity!r}") from None
    except ValueError as e:
        raise InvalidCsr(f"CSR extensions are malformed: {e}") from None
    names = list(ext.value)
    dns = ext.value.get_values_for_type(x509.DNSName)
    ips = ext.value.get_values_for_type(x509.IPAddress)
    if dns or ips:
        found = [*dns, *(str(ip) for ip in ips)]
        raise InvalidCsr(f"CSR must not carry DNS or IP SANs, found {found}")
    if len(names) != 1:
        raise InvalidCsr(f"CSR must have exactly one SAN (the URI {identity!r}), found {len(names)}")
    (name,) = names
    if not isinstance(name, x509.UniformResourceIdentifier):
        raise InvalidCsr(f"CSR SAN must be a URI, found {type(name).__name__}")
    if name.value != identity:
        raise InvalidCsr(f"CSR SAN {name.value!r} does not equal the requested identity {identity!r}")


def _describe(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return type(key).__name__.lstrip("_").removesuffix("PublicKey") or "an unknown key type"
