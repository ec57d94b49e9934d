"""Health checks of the trust anchor, the issuer and leaf chains (pure; used by `meshlet check`).

Every check returns a `CertCheck(name, status, message)`; nothing raises for a
bad certificate, so the caller renders all findings at once.
"""
from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa

MIN_REMAINING = dt.timedelta(days=60)


class Status(enum.Enum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class CertCheck:
    name: str
    status: Status
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not Status.ERROR


def check_anchors(anchors: Sequence[x509.Certificate], *, now: dt.datetime | None = None) -> list[CertCheck]:
    """Trust anchors: ECDSA P-256 or RSA 2048/4096, CA, valid now, more than 60 days left."""
    now = now or _now()
    if not anchors:
        return [CertCheck("trust anchors present", Status.ERROR, "no trust anchor certificate found")]
    results: list[CertCheck] = []
    for i, cert in enumerate(anchors):
        label = "trust anchor" if len(anchors) == 1 else f"trust anchor #{i + 1}"
        results.append(_algorithm(label, cert, allow_rsa=True))
        results.append(_is_ca(label, cert))
        results.extend(_validity(label, cert, now))
    return results


def check_issuer(
    issuer: x509.Certificate, anchors: Sequence[x509.Certificate], *, now: dt.datetime | None = None
) -> list[CertCheck]:
    """Issuer: ECDSA P-256, CA, valid now, more than 60 days left, signed by one of the anchors."""
    now = now or _now()
    label = "issuer"
    results = [_algorithm(label, issuer, allow_rsa=False), _is_ca(label, issuer), *_validity(label, issuer, now)]
    if any(_issued_by(issuer, a) for a in anchors):
        results.append(CertCheck("issuer is signed by the trust anchor", Status.OK))
    else:
        results.append(
            CertCheck(
                "issuer is signed by the trust anchor",
                Status.ERROR,
                f"issuer {issuer.subject.rfc4514_string()!r} is not signed by any trust anchor",
            )
        )
    return results


def verify_leaf(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    expected_uri: str | None = None,
    now: dt.datetime | None = None,
) -> CertCheck:
    """Is `leaf` issued under `anchors` (through `intermediates`) and valid now?"""
    now = now or _now()
    name = "certificate is issued under the trust anchor"
    if expected_uri is not None:
        uris = _uris(leaf)
        if uris != [expected_uri]:
            return CertCheck(name, Status.ERROR, f"certificate SANs {uris} are not exactly [{expected_uri!r}]")
    chain = [leaf, *intermediates]
    for cert in chain:
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            return CertCheck(name, Status.ERROR, f"{_subject(cert)} is not valid now (valid {_span(cert)})")
    current = leaf
    remaining = list(intermediates)
    for _ in range(len(intermediates) + 1):
        if any(_issued_by(current, a) for a in anchors):
            return CertCheck(name, Status.OK)
        parent = next((c for c in remaining if _issued_by(current, c) and _ca_flag(c)), None)
        if parent is None:
            break
        remaining.remove(parent)
        current = parent
    return CertCheck(name, Status.ERROR, f"no chain from {_subject(leaf)} to a trust anchor")


def _algorithm(label: str, cert: x509.Certificate, *, allow_rsa: bool) -> CertCheck:
    name = f"{label} uses a supported algorithm"
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return CertCheck(name, Status.OK, "ECDSA P-256")
    if allow_rsa and isinstance(key, rsa.RSAPublicKey) and key.key_size in (2048, 4096):
        return CertCheck(name, Status.OK, f"RSA {key.key_size}")
    wanted = "ECDSA P-256 or RSA 2048/4096" if allow_rsa else "ECDSA P-256"
    return CertCheck(name, Status.ERROR, f"{label} key is {_describe_key(key)}, must be {wanted}")


def _is_ca(label: str, cert: x509.Certificate) -> CertCheck:
    name = f"{label} is a CA"
    if _ca_flag(cert):
        return CertCheck(name, Status.OK)
    return CertCheck(name, Status.ERROR, f"{label} lacks basicConstraints CA:TRUE")


def _validity(label: str, cert: x509.Certificate, now: dt.datetime) -> list[CertCheck]:
    span = _span(cert)
    if now < cert.not_valid_before_utc:
        return [CertCheck(f"{label} is valid", Status.ERROR, f"{label} is not valid yet (valid {span})")]
    if now > cert.not_valid_after_utc:
        return [CertCheck(f"{label} is valid", Status.ERROR, f"{label} expired (valid {span})")]
    left = cert.not_valid_after_utc - now
    results = [CertCheck(f"{label} is valid", Status.OK, f"valid {span}")]
    name = f"{label} is valid for at least 60 days"
    if left < MIN_REMAINING:
        results.append(CertCheck(name, Status.WARNING, f"{label} expires in {left.days} days ({cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})"))
    else:
        results.append(CertCheck(name, Status.OK, f"{left.days} days left"))
    return results


def _ca_flag(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in san]


def _describe_key(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return type(key).__name__.lstrip("_")


def _subject(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string() or _uris(cert))


def _span(cert: x509.Certificate) -> str:
    return f"{cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_ca_pem(anchors_pem: bytes, issuer_pem: bytes, *, now: dt.datetime | None = None) -> list[CertCheck]:
    """All anchor and issuer checks from PEM bytes (e.g. `ca.crt` and `issuer.crt`)."""
    try:
        anchors = x509.load_pem_x509_certificates(anchors_pem)
    except ValueError as e:
        return [CertCheck("trust anchors can be read", Status.ERROR, f"trust anchors are not PEM certificates: {e}")]
    try:
        issuer = x509.load_pem_x509_certificates(issuer_pem)[0]
    except (ValueError, IndexError) as e:
        return [
            *check_anchors(anchors, now=now),
            CertCheck("issuer can be read", Status.ERROR, f"issuer is not a PEM certificate: {e}"),
        ]
    return [*check_anchors(anchors, now=now), *check_issuer(issuer, anchors, now=now)]
