"""The proxy's workload identity: key, CSR, Certify, renewal, TLS contexts.

The EC P-256 key is generated in memory at start (through libcrypto, see
`osslkey`), never written, never sent; only a CSR leaves the process. The
certificate is renewed at `renew_fraction` of its lifetime (retrying with
backoff) and the SSL contexts are swapped atomically: new connections use
the new ones, existing ones keep theirs.
"""
from __future__ import annotations

import asyncio
import hashlib
import random
import ssl
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

from .config import ProxyConfig
from .errors import IdentityError
from .metrics import ProxyMetrics
from .tlsctx import client_context, memfile, server_context


class PrivateKey(Protocol):
    def csr(self, uri: str) -> bytes: ...
    def private_pem(self) -> bytes: ...


class _CryptographyKey:
    """Fallback when libcrypto cannot be driven directly (not OpenSSL 3)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self._key = ec.generate_private_key(ec.SECP256R1())

    def csr(self, uri: str) -> bytes:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM)

    def private_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())


def generate_key() -> PrivateKey:
    """A fresh EC P-256 key, in memory only."""
    from . import osslkey

    return osslkey.EcKey() if osslkey.available() else _CryptographyKey()


def build_csr(key: PrivateKey, identity: str) -> bytes:
    """A PEM PKCS#10 request whose only SAN is the URI `identity`."""
    return key.csr(identity)


@dataclass(frozen=True)
class TlsMaterial:
    uri: str
    leaf_pem: bytes
    chain_pem: bytes
    """Leaf first, then the intermediates."""
    not_before: float
    not_after: float
    trust_fingerprint: str
    """SHA-256 of the first trust anchor (DER)."""
    server_ctx: ssl.SSLContext
    client_ctx: ssl.SSLContext
    h2_client_ctx: ssl.SSLContext | None = None
    """As `client_ctx`, offering ALPN "h2" (the proxy's HTTP/2 upstream connections)."""

    def renew_at(self, fraction: float) -> float:
        return self.not_before + (self.not_after - self.not_before) * fraction

    def dump(self) -> dict[str, Any]:
        return {"uri": self.uri, "not_after": int(self.not_after), "cert_pem": self.leaf_pem.decode(),
                "trust_anchor_fingerprint": self.trust_fingerprint}


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")


def _decode_cert(pem: bytes) -> dict[str, Any]:
    """The fields `ssl` decodes from a certificate (subjectAltName, notBefore, notAfter)."""
    import _ssl

    with memfile(pem, "meshlet-leaf") as path:
        try:
            return _ssl._test_decode_cert(path)  # type: ignore[attr-defined,no-any-return]  # noqa: SLF001
        except (ssl.SSLError, ValueError) as e:
            raise IdentityError(f"identity returned an unreadable certificate: {e}") from None


def material_from(key: PrivateKey, identity: str, leaf_der: bytes, intermediates: list[bytes],
                  trust_pem: bytes) -> TlsMaterial:
    """Check the issued leaf against our key and identity and build both contexts."""
    if not leaf_der:
        raise IdentityError("identity returned an unreadable certificate: empty")
    leaf_pem = ssl.DER_cert_to_PEM_cert(leaf_der).encode()
    info = _decode_cert(leaf_pem)
    uris = [v for k, v in info.get("subjectAltName", ()) if k == "URI"]
    if uris != [identity]:
        raise IdentityError(f"issued certificate names {uris}, expected [{identity!r}]")
    anchors = _PEM_CERT.findall(trust_pem)
    if not anchors:
        raise IdentityError("trust anchors file holds no certificate")
    chain_pem = leaf_pem + b"".join(ssl.DER_cert_to_PEM_cert(d).encode() for d in intermediates)
    key_pem = key.private_pem()
    try:
        server = server_context(chain_pem, key_pem, trust_pem)
        client = client_context(chain_pem, key_pem, trust_pem)
        h2_client = client_context(chain_pem, key_pem, trust_pem, alpn=("h2",))
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e).upper():
            raise IdentityError("issued certificate is not for our key") from None
        raise IdentityError(f"cannot build TLS contexts: {e}") from None
    finally:
        del key_pem
    return TlsMaterial(
        uri=identity, leaf_pem=leaf_pem, chain_pem=chain_pem,
        not_before=float(ssl.cert_time_to_seconds(info["notBefore"])),
        not_after=float(ssl.cert_time_to_seconds(info["notAfter"])),
        trust_fingerprint=hashlib.sha256(ssl.PEM_cert_to_DER_cert(anchors[0].decode())).hexdigest(),
        server_ctx=server, client_ctx=client, h2_client_ctx=h2_client,
    )


def identity_channel_tls(cfg: ProxyConfig, trust_pem: bytes) -> dict[str, Any]:
    """Channel arguments for TLS to identity (Kubernetes mode), verified with the trust anchors; {} = plaintext."""
    if not cfg.identity_server_name:
        return {}
    from grpclib.config import Configuration

    try:
        ctx = ssl.create_default_context(cadata=trust_pem.decode("ascii", "replace"))
    except ssl.SSLError as e:
        raise IdentityError(f"trust anchors {cfg.trust_anchors} are unusable: {e}") from None
    ctx.set_alpn_protocols(["h2"])
    return {"ssl": ctx, "config": Configuration(ssl_target_name_override=cfg.identity_server_name)}


class IdentityManager:
    """Holds the current `TlsMaterial` (None until the first certificate)."""

    def __init__(self, cfg: ProxyConfig, metrics: ProxyMetrics, log: Any) -> None:
        self.cfg = cfg
        self.current: TlsMaterial | None = None
        self.ready = asyncio.Event()
        self._metrics = metrics
        self._log = log.bind(component="identity")
        self._key: PrivateKey | None = None
        self.last_error = ""

    async def run(self) -> None:
        """Certify, then renew forever (cancel to stop)."""
        cfg = self.cfg
        self._key = generate_key()
        backoff = 0.2
        while True:
            try:
                self.current = await self._certify()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure is retried, never fatal
                self.last_error = str(e) or type(e).__name__
                self._metrics.identity_certify_failures.labels(self._metrics.namespace, self._metrics.pod).inc()
                self._log.warning("certify.failed", error=self.last_error, retry_in=round(backoff, 2))
                delay = backoff * (0.5 + random.random())
                if self.current is not None:  # never wait past expiry
                    delay = min(delay, max(self.current.not_after - time.time(), 0.1))
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.2
            self.last_error = ""
            self.ready.set()
            m = self.current
            self._metrics.identity_cert_expiry.labels(self._metrics.namespace, self._metrics.pod).set(m.not_after)
            self._log.info("certify.complete", identity=m.uri, not_after=int(m.not_after))
            await asyncio.sleep(max(m.renew_at(cfg.renew_fraction) - time.time(), 1.0))

    async def _certify(self) -> TlsMaterial:
        from grpclib.client import Channel

        from meshlet.api import identity_pb

        cfg = self.cfg
        assert self._key is not None and cfg.identity_addr is not None
        try:
            with open(cfg.token_file, "rb") as f:
                token = f.read().strip()
        except OSError as e:
            raise IdentityError(f"cannot read token file {cfg.token_file}: {e.strerror}") from None
        try:  # read at every renewal: rotated anchors are picked up
            with open(cfg.trust_anchors, "rb") as f:
                trust_pem = f.read()
        except OSError as e:
            raise IdentityError(f"cannot read trust anchors {cfg.trust_anchors}: {e.strerror}") from None
        csr = build_csr(self._key, cfg.identity)
        channel = Channel(cfg.identity_addr[0], cfg.identity_addr[1], **identity_channel_tls(cfg, trust_pem))
        try:
            stub = identity_pb.IdentityStub(channel)
            resp = await stub.certify(identity_pb.CertifyRequest(
                identity=cfg.identity, token=token, certificate_signing_request=csr), timeout=10)
        finally:
            channel.close()
        return material_from(self._key, cfg.identity, resp.leaf_certificate,
                             list(resp.intermediate_certificates), trust_pem)
