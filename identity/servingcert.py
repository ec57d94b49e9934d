"""TLS for identity's own gRPC port in Kubernetes mode.

At start-up identity issues itself a server certificate for its Service name
(`meshlet-identity.<ns>.svc`, plus `.svc.cluster.local` and the short forms)
from its own issuer; proxies verify it with the trust anchors they already
hold (`MESHLET_PROXY_IDENTITY_SERVER_NAME` names what they expect). When the
issuer rotates, `ServingCert.renew` loads a new certificate into the same
SSL context: new connections get it, open ones keep theirs.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .issuer import BACKDATE, CA, cert_pem, key_pem

SERVING_LIFETIME = dt.timedelta(days=30)
DEFAULT_SERVICE = "meshlet-identity"


def service_names(service: str, namespace: str, cluster_domain: str = "cluster.local") -> tuple[str, ...]:
    """DNS names a Service is reached by, the `.svc` form first (what proxies are told to expect)."""
    return (f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.{cluster_domain}",
            f"{service}.{namespace}", service)


def issue_serving_cert(ca: CA, dns_names: Sequence[str], *, now: dt.datetime | None = None,
                       lifetime: dt.timedelta = SERVING_LIFETIME) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for `dns_names`, signed by the issuer (never past the issuer's own expiry)."""
    now = now or dt.datetime.now(dt.UTC).replace(microsecond=0)
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_ski = ca.issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca.issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + lifetime, ca.issuer_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False)
        .sign(ca.issuer_key, hashes.SHA256())
    )
    return cert, key


class ServingCert:
    """A server SSL context (ALPN h2, for grpclib) holding a certificate issued by the current CA."""

    def __init__(self, ca: CA, dns_names: Sequence[str]) -> None:
        self.dns_names = tuple(dns_names)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(["h2"])
        self.cert: x509.Certificate | None = None
        self.renew(ca)

    def renew(self, ca: CA) -> None:
        cert, key = issue_serving_cert(ca, self.dns_names)
        chain = cert_pem(cert) + cert_pem(ca.issuer_cert)
        # load_cert_chain reads files: write them to a private temporary directory, gone right after.
        with tempfile.TemporaryDirectory(prefix="meshlet-identity-tls-") as d:
            with open(f"{d}/tls.crt", "wb") as f:
                f.write(chain)
            with open(f"{d}/tls.key", "wb") as f:
                f.write(key_pem(key))
            self.context.load_cert_chain(f"{d}/tls.crt", f"{d}/tls.key")
        self.cert = cert

    def renew_at(self) -> float:
        """Epoch seconds when two thirds of the current certificate's lifetime have passed."""
        assert self.cert is not None
        start, end = self.cert.not_valid_before_utc.timestamp(), self.cert.not_valid_after_utc.timestamp()
        return start + (end - start) * 2 / 3

    async def keep_fresh(self, current_ca: Callable[[], CA]) -> None:
        """Renew from `current_ca()` at two thirds of each certificate's lifetime. Runs until cancelled."""
        while True:
            await asyncio.sleep(max(self.renew_at() - time.time(), 60.0))
            if time.time() >= self.renew_at():
                self.renew(current_ca())
