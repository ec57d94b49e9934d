"""TLS contexts from in-memory key material, and peer identity checks.

`ssl` loads certificates and keys only from paths. The key never touches a
filesystem: each PEM goes into an anonymous `memfd_create` file (RAM only,
no name in any directory, close-on-exec) and OpenSSL reads it through
`/proc/self/fd/N`; the fd is closed right after loading.
"""
from __future__ import annotations

import os
import ssl
from contextlib import contextmanager
from collections.abc import Iterator


@contextmanager
def memfile(data: bytes, name: str) -> Iterator[str]:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _load(ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes, trust_pem: bytes) -> None:
    with memfile(chain_pem, "meshlet-chain") as cert_path, memfile(key_pem, "meshlet-key") as key_path:
        ctx.load_cert_chain(cert_path, key_path)
    ctx.load_verify_locations(cadata=trust_pem.decode("ascii"))


def server_context(chain_pem: bytes, key_pem: bytes, trust_pem: bytes) -> ssl.SSLContext:
    """Inbound: presents our leaf, requires a client certificate chaining to the anchors."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # h2 for the peer proxies' HTTP/2 connections
    _load(ctx, chain_pem, key_pem, trust_pem)
    return ctx


def client_context(chain_pem: bytes, key_pem: bytes, trust_pem: bytes, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """Outbound: presents our leaf; the peer's URI SAN is checked after the handshake.
    `alpn`: protocols offered ("h2" for HTTP/2 connections; none for HTTP/1 and TCP)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    _load(ctx, chain_pem, key_pem, trust_pem)
    return ctx


def peer_uris(peercert: dict | None) -> list[str]:  # type: ignore[type-arg]
    """URI SANs of a verified peer certificate (as decoded by `ssl`)."""
    if not peercert:
        return []
    return [v for k, v in peercert.get("subjectAltName", ()) if k == "URI"]


def peer_id(peercert: dict | None) -> str:  # type: ignore[type-arg]
    """The SPIFFE id of a peer: its only URI SAN (empty when it has none or several)."""
    uris = peer_uris(peercert)
    return uris[0] if len(uris) == 1 and uris[0].startswith("spiffe://") else ""
