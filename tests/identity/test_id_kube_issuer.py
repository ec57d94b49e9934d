"""Issuer from a Secret's values (pure) and identity's own serving certificate (real TLS on loopback)."""
import asyncio
import base64
import datetime as dt
import ssl

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.server import Server
from identity_helpers import TD
from meshlet.api import identity_pb
from meshlet.identity.errors import CaError
from meshlet.identity.issuer import cert_pem, key_pem, new_anchor, new_issuer
from meshlet.identity.kube_issuer import SecretRef, ca_from_secret, decode_secret_data
from meshlet.identity.servingcert import ServingCert, service_names

REF = SecretRef("meshlet")


def secret_values(*, lifetime=dt.timedelta(days=365), now=None, anchor=None):
    anchor, anchor_key = anchor or new_anchor(TD)
    issuer, issuer_key = new_issuer(TD, anchor, anchor_key, lifetime=lifetime, now=now)
    return {"tls.crt": cert_pem(issuer), "tls.key": key_pem(issuer_key), "ca.crt": cert_pem(anchor)}


def test_ca_from_secret():
    values = secret_values()
    ca = ca_from_secret(values, REF, TD)
    assert cert_pem(ca.issuer_cert) == values["tls.crt"] and ca.anchors_pem == values["ca.crt"]


def test_decode_secret_data():
    assert decode_secret_data({"a": base64.b64encode(b"x").decode()}, REF) == {"a": b"x"}
    with pytest.raises(CaError, match="Secret meshlet/meshlet-identity-issuer key 'a': not valid base64"):
        decode_secret_data({"a": "!!"}, REF)


@pytest.mark.parametrize(("change", "message"), [
    ({"ca.crt": b""}, "lacks 'ca.crt'"),
    ({"tls.crt": None, "tls.key": None}, "lacks 'tls.crt', 'tls.key'"),
    ({"tls.crt": b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"}, "key 'tls.crt': not a PEM"),
    ({"tls.key": b"garbage"}, "key 'tls.key': not an unencrypted PEM private key"),
    ({"tls.key": key_pem(ec.generate_private_key(ec.SECP256R1()))}, "key 'tls.key': private key does not match"),
    ({"ca.crt": cert_pem(new_anchor(TD)[0])}, "key 'tls.crt': issuer certificate is not signed by any trust anchor"),
])
def test_bad_secret_names_the_key(change, message):
    values = {k: v for k, v in {**secret_values(), **change}.items() if v is not None}
    with pytest.raises(CaError, match=message) as e:
        ca_from_secret(values, REF, TD)
    assert "Secret meshlet/meshlet-identity-issuer" in str(e.value)


def test_expired_issuer_is_refused():
    values = secret_values(lifetime=dt.timedelta(days=1), now=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    with pytest.raises(CaError, match="key 'tls.crt': issuer certificate expired"):
        ca_from_secret(values, REF, TD)


class Echo(identity_pb.IdentityBase):
    async def certify(self, message):
        return identity_pb.CertifyResponse(valid_until=7)


async def test_serving_cert_verifies_with_the_anchor_and_renews(tmp_path):
    anchor = new_anchor(TD)
    ca = ca_from_secret(secret_values(anchor=anchor), REF, TD)
    names = service_names("meshlet-identity", "meshlet")
    assert names[0] == "meshlet-identity.meshlet.svc"
    serving = ServingCert(ca, names)
    server = Server([Echo()])
    await server.start("127.0.0.1", 0, ssl=serving.context)
    port = server._server.sockets[0].getsockname()[1]

    async def call(name: str) -> int:
        ctx = ssl.create_default_context(cadata=ca.anchors_pem.decode())
        ctx.set_alpn_protocols(["h2"])
        channel = Channel("127.0.0.1", port, ssl=ctx, config=Configuration(ssl_target_name_override=name))
        try:
            resp = await identity_pb.IdentityStub(channel).certify(identity_pb.CertifyRequest(), timeout=30)
            return resp.valid_until
        finally:
            channel.close()

    try:
        assert await call("meshlet-identity.meshlet.svc") == 7
        with pytest.raises(ssl.SSLCertVerificationError):
            await call("meshlet-identity.other.svc")
        first = serving.cert
        rotated = ca_from_secret(secret_values(anchor=anchor), REF, TD)  # new issuer, same anchor
        serving.renew(rotated)
        assert serving.cert != first and serving.cert.issuer == rotated.issuer_cert.subject
        assert await call("meshlet-identity.meshlet.svc.cluster.local") == 7
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 30)
