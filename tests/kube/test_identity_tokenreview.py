"""Real path: `python -m meshlet.identity --store kube` against a real kube-apiserver.

Real projected tokens (TokenRequest, audience identity.meshlet.io) checked with a
real TokenReview; the issuer read from a real Secret; gRPC over TLS verified
with the trust anchor and identity's Service name.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from cp_kube_helpers import (
    AUDIENCE,
    TD,
    Proc,
    create_service_account,
    issuer_secret,
    request_token,
    tls_client_context,
)
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Status
from kubernetes_asyncio import client as kclient
from meshlet.api import identity_pb
from meshlet.identity.certcheck import Status as CheckStatus
from meshlet.identity.certcheck import verify_leaf
from meshlet.identity.issuer import new_anchor

SECRET = "meshlet-identity-issuer"


def csr_for(identity: str) -> bytes:
    from cryptography.hazmat.primitives import hashes

    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=False)
            .sign(key, hashes.SHA256()).public_bytes(Encoding.PEM))


def spiffe(ns: str, sa: str) -> str:
    return f"spiffe://{TD}/ns/{ns}/sa/{sa}"


def start_identity(kube_api, ns: str, tmp_path, *extra: str, kubeconfig=None) -> Proc:
    return Proc("meshlet.identity", ["--store", "kube", "--kubeconfig", str(kubeconfig or kube_api.kubeconfig),
                                     "--namespace", ns, "--trust-domain", TD, "--issuer-refresh", "0.5", *extra],
                tmp_path / f"identity-{time.monotonic_ns()}.log")


class Client:
    def __init__(self, proc: Proc, ns: str, anchor_pem: bytes) -> None:
        self.channel = Channel("127.0.0.1", proc.port, ssl=tls_client_context(anchor_pem),
                               config=Configuration(ssl_target_name_override=f"meshlet-identity.{ns}.svc"))
        self.stub = identity_pb.IdentityStub(self.channel)

    async def certify(self, identity: str, token: bytes) -> identity_pb.CertifyResponse:
        return await self.stub.certify(identity_pb.CertifyRequest(
            identity=identity, token=token, certificate_signing_request=csr_for(identity)), timeout=60)


async def test_certify_with_real_tokens(kube_api, kube_client, kube_ns, tmp_path):
    core = kclient.CoreV1Api(kube_client)
    anchor = new_anchor(TD)
    secret, anchor_pem = issuer_secret(SECRET, anchor)
    await core.create_namespaced_secret(kube_ns, secret)
    for sa in ("alice", "bob"):
        await create_service_account(kube_client, kube_ns, sa)
    alice_token = await request_token(kube_client, kube_ns, "alice", [AUDIENCE])
    other_audience = await request_token(kube_client, kube_ns, "alice", ["someone-else"])

    proc = start_identity(kube_api, kube_ns, tmp_path)
    try:
        await proc.wait_ready()
        client = Client(proc, kube_ns, anchor_pem)
        try:
            resp = await client.certify(spiffe(kube_ns, "alice"), alice_token)
            leaf = x509.load_der_x509_certificate(resp.leaf_certificate)
            chain = [x509.load_der_x509_certificate(d) for d in resp.intermediate_certificates]
            anchors = x509.load_pem_x509_certificates(anchor_pem)
            assert verify_leaf(leaf, chain, anchors, expected_uri=spiffe(kube_ns, "alice")).status is CheckStatus.OK

            with pytest.raises(GRPCError) as e:  # alice's token, bob's identity
                await client.certify(spiffe(kube_ns, "bob"), alice_token)
            assert e.value.status is Status.PERMISSION_DENIED and "alice" in e.value.message

            with pytest.raises(GRPCError) as e:  # a real token, but not for identity's audience
                await client.certify(spiffe(kube_ns, "alice"), other_audience)
            assert e.value.status is Status.UNAUTHENTICATED and "audience" in e.value.message, e.value.message

            with pytest.raises(GRPCError) as e:
                await client.certify(spiffe(kube_ns, "alice"), b"not-a-token")
            assert e.value.status is Status.UNAUTHENTICATED

            # Rotation: a new issuer under the same anchor is picked up without a restart.
            old_issuer = chain[0].subject
            rotated, _ = issuer_secret(SECRET, anchor)
            rotated_cert = x509.load_pem_x509_certificate(rotated.string_data["tls.crt"].encode())
            await core.replace_namespaced_secret(SECRET, kube_ns, rotated)
            deadline = time.monotonic() + 60
            while True:
                resp = await client.certify(spiffe(kube_ns, "alice"), alice_token)
                issuer = x509.load_der_x509_certificate(resp.intermediate_certificates[0])
                if issuer == rotated_cert:
                    break
                assert issuer.subject == old_issuer and time.monotonic() < deadline, proc.output()
                await asyncio.sleep(0.2)
            leaf = x509.load_der_x509_certificate(resp.leaf_certificate)
            assert verify_leaf(leaf, [issuer], anchors, expected_uri=spiffe(kube_ns, "alice")).status is CheckStatus.OK

            # A broken Secret is refused and the last good issuer keeps signing.
            broken, _ = issuer_secret(SECRET, anchor, key_of_other=True)
            await core.replace_namespaced_secret(SECRET, kube_ns, broken)
            deadline = time.monotonic() + 60
            while "private key does not match" not in proc.output():
                assert time.monotonic() < deadline, proc.output()
                await asyncio.sleep(0.2)
            resp = await client.certify(spiffe(kube_ns, "alice"), alice_token)
            assert x509.load_der_x509_certificate(resp.intermediate_certificates[0]) == rotated_cert
        finally:
            client.channel.close()
    finally:
        assert proc.stop() == 0, proc.output()


async def test_api_errors_are_unavailable(kube_api, kube_client, kube_ns, tmp_path):
    """A user that may read the issuer Secret but not create TokenReviews: UNAVAILABLE, not a refusal."""
    core = kclient.CoreV1Api(kube_client)
    secret, anchor_pem = issuer_secret(SECRET)
    await core.create_namespaced_secret(kube_ns, secret)
    rbac = kclient.RbacAuthorizationV1Api(kube_client)
    await rbac.create_namespaced_role(kube_ns, kclient.V1Role(
        metadata=kclient.V1ObjectMeta(name="read-issuer"),
        rules=[kclient.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["get"], resource_names=[SECRET])]))
    await rbac.create_namespaced_role_binding(kube_ns, kclient.V1RoleBinding(
        metadata=kclient.V1ObjectMeta(name="read-issuer"),
        role_ref=kclient.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-issuer"),
        subjects=[kclient.RbacV1Subject(kind="User", name="viewer", api_group="rbac.authorization.k8s.io")]))
    await create_service_account(kube_client, kube_ns, "alice")
    token = await request_token(kube_client, kube_ns, "alice", [AUDIENCE])
    proc = start_identity(kube_api, kube_ns, tmp_path, kubeconfig=kube_api.kubeconfig_for("viewer"))
    try:
        await proc.wait_ready()
        client = Client(proc, kube_ns, anchor_pem)
        try:
            with pytest.raises(GRPCError) as e:
                await client.certify(spiffe(kube_ns, "alice"), token)
            assert e.value.status is Status.UNAVAILABLE and "TokenReview failed" in e.value.message
        finally:
            client.channel.close()
    finally:
        assert proc.stop() == 0, proc.output()


@pytest.mark.parametrize(("secret", "message"), [
    (None, "meshlet-identity-issuer not found"),
    ("mismatched", "key 'tls.key': private key does not match"),
    ("no-anchor", "lacks 'ca.crt'"),
])
async def test_unusable_issuer_secret_is_a_clear_startup_error(kube_api, kube_client, kube_ns, tmp_path,
                                                               secret, message):
    core = kclient.CoreV1Api(kube_client)
    if secret is not None:
        body, _ = issuer_secret(SECRET, key_of_other=secret == "mismatched")
        if secret == "no-anchor":
            del body.string_data["ca.crt"]
        await core.create_namespaced_secret(kube_ns, body)
    proc = start_identity(kube_api, kube_ns, tmp_path)
    try:
        code = await asyncio.to_thread(proc.proc.wait, 60)
    finally:
        proc.stop()
    assert code == 2, proc.output()
    assert f"Secret {kube_ns}/{SECRET}" in proc.output() and message in proc.output(), proc.output()


async def test_proxy_certifies_with_its_token_over_tls(kube_api, kube_client, kube_ns, tmp_path):
    """The proxy's own identity client, as the injector configures it: token file, anchors, TLS server name."""
    from meshlet.controller.log import setup
    from meshlet.proxy.config import ProxyConfig
    from meshlet.proxy.identity import IdentityManager
    from meshlet.proxy.metrics import ProxyMetrics

    core = kclient.CoreV1Api(kube_client)
    secret, anchor_pem = issuer_secret(SECRET)
    await core.create_namespaced_secret(kube_ns, secret)
    await create_service_account(kube_client, kube_ns, "web")
    (tmp_path / "token").write_bytes(await request_token(kube_client, kube_ns, "web", [AUDIENCE]))
    (tmp_path / "ca-bundle.crt").write_bytes(anchor_pem)
    proc = start_identity(kube_api, kube_ns, tmp_path)
    try:
        await proc.wait_ready()
        cfg = ProxyConfig(identity=spiffe(kube_ns, "web"), token_file=str(tmp_path / "token"),
                          trust_anchors=str(tmp_path / "ca-bundle.crt"), identity_addr=("127.0.0.1", proc.port),
                          identity_server_name=f"meshlet-identity.{kube_ns}.svc")
        idm = IdentityManager(cfg, ProxyMetrics(kube_ns, "web-0"), setup("test"))
        task = asyncio.create_task(idm.run())
        try:
            await asyncio.wait_for(idm.ready.wait(), 60)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert idm.current is not None and idm.current.uri == spiffe(kube_ns, "web"), idm.last_error
    finally:
        assert proc.stop() == 0, proc.output()
