"""Certificates from the issuer work for real mTLS with Python's ssl module (what the proxy uses)."""
import asyncio
import ssl

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from identity_helpers import ALICE, BOB, TD, make_csr
from meshlet.identity.csr import check_csr
from meshlet.identity.issuer import cert_pem, ensure_ca, key_pem


def _identity_files(ca, identity, tmp_path, name):
    key = ec.generate_private_key(ec.SECP256R1())
    csr, _ = check_csr(make_csr(key=key, identity=identity), identity, TD)
    leaf = ca.sign_leaf(csr, identity)
    chain = tmp_path / f"{name}.pem"
    chain.write_bytes(cert_pem(leaf) + cert_pem(ca.issuer_cert))
    keyfile = tmp_path / f"{name}.key"
    keyfile.write_bytes(key_pem(key))
    return chain, keyfile


def _ctx(purpose, chain, keyfile, anchors):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose == "server" else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(chain, keyfile)
    ctx.load_verify_locations(cadata=anchors.decode())
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _peer_uri(ssl_object):
    der = ssl_object.getpeercert(binary_form=True)
    san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [n.value for n in san]


async def test_mtls_between_two_leaves(tmp_path):
    ca = ensure_ca(tmp_path / "ca", TD)
    server_ctx = _ctx("server", *_identity_files(ca, BOB, tmp_path, "bob"), ca.anchors_pem)
    client_ctx = _ctx("client", *_identity_files(ca, ALICE, tmp_path, "alice"), ca.anchors_pem)
    seen = asyncio.get_running_loop().create_future()

    async def handle(reader, writer):
        seen.set_result(_peer_uri(writer.get_extra_info("ssl_object")))
        writer.write(b"hi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="bob"), 30)
        assert _peer_uri(writer.get_extra_info("ssl_object")) == [BOB]
        assert await asyncio.wait_for(reader.read(), 30) == b"hi"
        writer.close()
        assert await asyncio.wait_for(seen, 30) == [ALICE]
    finally:
        server.close()
        await server.wait_closed()


async def test_other_ca_is_refused(tmp_path):
    ca = ensure_ca(tmp_path / "ca", TD)
    other = ensure_ca(tmp_path / "other", TD)
    server_ctx = _ctx("server", *_identity_files(ca, BOB, tmp_path, "bob"), ca.anchors_pem)
    client_ctx = _ctx("client", *_identity_files(other, ALICE, tmp_path, "mallory"), other.anchors_pem)

    async def handle(reader, writer):
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="bob"), 30)
        except ssl.SSLError as e:
            assert "CERTIFICATE_VERIFY_FAILED" in str(e)
        else:
            writer.close()
            raise AssertionError("handshake with a certificate of another CA succeeded")
    finally:
        server.close()
        await server.wait_closed()
