"""Real path: `python -m meshlet.identity` over real gRPC with a real SqliteStore."""
import hashlib

import pytest
from cp_process import Proc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status
from identity_helpers import ALICE, BOB, make_csr, rsa_key
from meshlet.api import identity_pb
from meshlet.controller.model import (
    Namespace,
    ObjectMeta,
    WorkloadToken,
    WorkloadTokenSpec,
)
from meshlet.controller.store import SqliteStore
from meshlet.identity.certcheck import Status as CheckStatus
from meshlet.identity.certcheck import verify_leaf

TOKEN = b"alice-token-0123456789abcdef"


@pytest.fixture
async def identity(tmp_path):
    store = SqliteStore(tmp_path / "store.db")
    await store.apply([
        Namespace(metadata=ObjectMeta(name="shop")),
        WorkloadToken(
            metadata=ObjectMeta(name="alice-0", namespace="shop"),
            spec=WorkloadTokenSpec(service_account="alice", pod="alice-0",
                                   token_sha256=hashlib.sha256(TOKEN).hexdigest()),
        ),
    ])
    await store.close()
    proc = Proc("meshlet.identity", ["--state-dir", str(tmp_path), "--trust-domain", "cluster.local"],
                tmp_path / "identity.log")
    try:
        await proc.wait_ready()
        channel = Channel("127.0.0.1", proc.port)
        try:
            yield proc, identity_pb.IdentityStub(channel), tmp_path
        finally:
            channel.close()
    finally:
        assert proc.stop() == 0, proc.output()


async def test_certify_real_path(identity):
    proc, stub, state = identity
    key = ec.generate_private_key(ec.SECP256R1())
    resp = await stub.certify(identity_pb.CertifyRequest(
        identity=ALICE, token=TOKEN, certificate_signing_request=make_csr(key=key)), timeout=30)
    leaf = x509.load_der_x509_certificate(resp.leaf_certificate)
    intermediates = [x509.load_der_x509_certificate(d) for d in resp.intermediate_certificates]
    anchors = x509.load_pem_x509_certificates((state / "identity" / "ca.crt").read_bytes())
    assert verify_leaf(leaf, intermediates, anchors, expected_uri=ALICE).status is CheckStatus.OK
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert resp.valid_until == int(leaf.not_valid_after_utc.timestamp())

    # refusals, each with its status
    with pytest.raises(GRPCError) as e:
        await stub.certify(identity_pb.CertifyRequest(
            identity=ALICE, token=b"wrong-token", certificate_signing_request=make_csr()), timeout=30)
    assert e.value.status is Status.UNAUTHENTICATED
    with pytest.raises(GRPCError) as e:
        await stub.certify(identity_pb.CertifyRequest(
            identity=BOB, token=TOKEN, certificate_signing_request=make_csr(identity=BOB)), timeout=30)
    assert e.value.status is Status.PERMISSION_DENIED and "alice" in e.value.message
    with pytest.raises(GRPCError) as e:
        await stub.certify(identity_pb.CertifyRequest(
            identity=ALICE, token=TOKEN, certificate_signing_request=make_csr(key=rsa_key())), timeout=30)
    assert e.value.status is Status.INVALID_ARGUMENT and "EC P-256" in e.value.message
    with pytest.raises(GRPCError) as e:
        await stub.certify(identity_pb.CertifyRequest(
            identity=ALICE, token=TOKEN, certificate_signing_request=b"garbage"), timeout=30)
    assert e.value.status is Status.INVALID_ARGUMENT

    status, metrics = proc.get("/metrics")
    assert status == 200
    assert "identity_certificates_issued_total 1.0" in metrics
    assert 'identity_certificates_refused_total{reason="invalid_token"} 1.0' in metrics
    assert 'identity_certificates_refused_total{reason="identity_mismatch"} 1.0' in metrics
    assert 'identity_certificates_refused_total{reason="invalid_csr"} 2.0' in metrics
    assert proc.get("/live")[0] == 200
    log = proc.output()
    assert "certify.refused" in log and "token is not known" in log


async def test_bring_your_own_ca(tmp_path):
    from meshlet.identity.issuer import cert_pem, key_pem, new_anchor, new_issuer

    anchor, anchor_key = new_anchor("example.org")
    issuer, issuer_key = new_issuer("example.org", anchor, anchor_key)
    (tmp_path / "anchors.pem").write_bytes(cert_pem(anchor))
    (tmp_path / "issuer.pem").write_bytes(cert_pem(issuer))
    (tmp_path / "issuer.key").write_bytes(key_pem(issuer_key))
    token = b"t" * 32
    store = SqliteStore(tmp_path / "store.db")
    await store.apply([WorkloadToken(
        metadata=ObjectMeta(name="p", namespace="default"),
        spec=WorkloadTokenSpec(service_account="default", pod="p", token_sha256=hashlib.sha256(token).hexdigest()),
    )])
    await store.close()
    byo = ["--issuer-cert", str(tmp_path / "issuer.pem"), "--issuer-key", str(tmp_path / "issuer.key"),
           "--trust-anchors", str(tmp_path / "anchors.pem")]
    proc = Proc("meshlet.identity", ["--state-dir", str(tmp_path), "--trust-domain", "example.org", *byo],
                tmp_path / "identity.log")
    try:
        await proc.wait_ready()
        channel = Channel("127.0.0.1", proc.port)
        try:
            me = "spiffe://example.org/ns/default/sa/default"
            resp = await identity_pb.IdentityStub(channel).certify(identity_pb.CertifyRequest(
                identity=me, token=token, certificate_signing_request=make_csr(identity=me)), timeout=30)
        finally:
            channel.close()
        leaf = x509.load_der_x509_certificate(resp.leaf_certificate)
        assert verify_leaf(leaf, [issuer], [anchor], expected_uri=me).status is CheckStatus.OK
        assert not (tmp_path / "identity").exists()  # nothing generated
    finally:
        assert proc.stop() == 0, proc.output()

    # an issuer key that does not match: refuses to start, saying why
    (tmp_path / "wrong.key").write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1())))
    bad = Proc("meshlet.identity", ["--state-dir", str(tmp_path), "--issuer-cert", str(tmp_path / "issuer.pem"),
                                    "--issuer-key", str(tmp_path / "wrong.key"),
                                    "--trust-anchors", str(tmp_path / "anchors.pem")], tmp_path / "bad.log")
    assert bad.proc.wait(timeout=60) == 2
    bad.stop()
    assert "does not match the issuer certificate" in bad.output()
