"""IdentityManager against a real grpclib Certify server (loopback) issuing short-lived certificates."""
import asyncio
import datetime as dt
import ssl

import grpclib
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpclib.server import Server

from meshlet.api import identity_pb
from meshlet.controller.log import setup
from meshlet.proxy.config import ProxyConfig
from meshlet.proxy.identity import IdentityManager
from meshlet.proxy.metrics import ProxyMetrics

ID = "spiffe://cluster.local/ns/demo/sa/web"


class ShortLivedIdentity(identity_pb.IdentityBase):
    def __init__(self, lifetime: float, fail_first: int = 0) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root")])
        now = dt.datetime.now(dt.timezone.utc)
        self.ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                   .serial_number(1).not_valid_before(now - dt.timedelta(minutes=1))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(self.key, hashes.SHA256()))
        self.lifetime = lifetime
        self.fail_first = fail_first
        self.calls: list[bytes] = []

    async def certify(self, message: identity_pb.CertifyRequest) -> identity_pb.CertifyResponse:
        self.calls.append(message.token)
        if len(self.calls) <= self.fail_first:
            raise grpclib.GRPCError(grpclib.Status.UNAVAILABLE, "not yet")
        csr = x509.load_pem_x509_csr(message.certificate_signing_request)
        now = dt.datetime.now(dt.timezone.utc)
        leaf = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.ca.subject)
                .public_key(csr.public_key()).serial_number(len(self.calls) + 1)
                .not_valid_before(now).not_valid_after(now + dt.timedelta(seconds=self.lifetime))
                .add_extension(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, critical=True)
                .sign(self.key, hashes.SHA256()))
        return identity_pb.CertifyResponse(leaf_certificate=leaf.public_bytes(serialization.Encoding.DER),
                                           valid_until=int(leaf.not_valid_after_utc.timestamp()))


async def start(service: ShortLivedIdentity, tmp_path):  # noqa: ANN001, ANN201
    server = Server([service])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # noqa: SLF001
    (tmp_path / "token").write_bytes(b"tok\n")
    (tmp_path / "ca.crt").write_bytes(service.ca.public_bytes(serialization.Encoding.PEM))
    cfg = ProxyConfig(identity=ID, token_file=str(tmp_path / "token"), trust_anchors=str(tmp_path / "ca.crt"),
                      identity_addr=("127.0.0.1", port))
    return server, cfg


async def wait_until(check, timeout: float = 30.0) -> None:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_renews_before_expiry_and_swaps_contexts(tmp_path) -> None:  # noqa: ANN001
    service = ShortLivedIdentity(lifetime=3)
    server, cfg = await start(service, tmp_path)
    idm = IdentityManager(cfg, ProxyMetrics("demo", "web"), setup("test"))
    task = asyncio.create_task(idm.run())
    try:
        await asyncio.wait_for(idm.ready.wait(), 30)
        first = idm.current
        assert first is not None and first.uri == ID
        assert service.calls == [b"tok"]  # token read from the file, stripped
        await wait_until(lambda: idm.current is not first)
        second = idm.current
        assert second is not None
        assert second.not_after > first.not_after
        assert second.server_ctx is not first.server_ctx  # new connections get the new contexts
        assert first.not_after - second.not_before > 0  # renewed before the first one expired
        assert isinstance(first.client_ctx, ssl.SSLContext)  # old contexts stay usable by their connections
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        await server.wait_closed()


async def test_retries_when_certify_fails(tmp_path) -> None:  # noqa: ANN001
    service = ShortLivedIdentity(lifetime=3600, fail_first=2)
    server, cfg = await start(service, tmp_path)
    metrics = ProxyMetrics("demo", "web")
    idm = IdentityManager(cfg, metrics, setup("test"))
    task = asyncio.create_task(idm.run())
    try:
        await asyncio.wait_for(idm.ready.wait(), 30)
        assert len(service.calls) == 3
        assert metrics.registry.get_sample_value("identity_certify_failure_total",
                                                 {"namespace": "demo", "pod": "web"}) == 2
        assert idm.last_error == ""
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        await server.wait_closed()


async def test_missing_files_are_reported_and_retried(tmp_path) -> None:  # noqa: ANN001
    service = ShortLivedIdentity(lifetime=3600)
    server, cfg = await start(service, tmp_path)
    anchors = tmp_path / "ca.crt"
    content = anchors.read_bytes()
    anchors.unlink()
    idm = IdentityManager(cfg, ProxyMetrics("demo", "web"), setup("test"))
    task = asyncio.create_task(idm.run())
    try:
        await wait_until(lambda: "cannot read trust anchors" in idm.last_error)
        assert not idm.ready.is_set()
        anchors.write_bytes(content)
        await asyncio.wait_for(idm.ready.wait(), 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        await server.wait_closed()
