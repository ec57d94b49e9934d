"""Helpers of the identity and destination tests against a real kube-apiserver (K4).

`Proc` (tests/identity/cp_process.py) runs a control-plane process on loopback;
the builders here create what those processes read through the API.
"""
from __future__ import annotations

import ssl
import sys
from pathlib import Path

from kubernetes_asyncio import client as kclient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "identity"))

from cp_process import Proc
from meshlet.identity.issuer import cert_pem, key_pem, new_anchor, new_issuer

__all__ = ["Proc", "create_service_account", "issuer_secret", "request_token", "tls_client_context"]

TD = "cluster.local"
AUDIENCE = "identity.meshlet.io"


def issuer_secret(name: str, anchor: tuple | None = None, *, key_of_other: bool = False
                  ) -> tuple[kclient.V1Secret, bytes]:
    """A kubernetes.io/tls Secret with a fresh issuer (signed by `anchor`, or a new one), and the anchor PEM."""
    anchor_cert, anchor_key = anchor or new_anchor(TD)
    issuer, issuer_key = new_issuer(TD, anchor_cert, anchor_key)
    if key_of_other:
        _, issuer_key = new_issuer(TD, anchor_cert, anchor_key)
    secret = kclient.V1Secret(
        metadata=kclient.V1ObjectMeta(name=name), type="kubernetes.io/tls",
        string_data={"tls.crt": cert_pem(issuer).decode(), "tls.key": key_pem(issuer_key).decode(),
                     "ca.crt": cert_pem(anchor_cert).decode()},
    )
    return secret, cert_pem(anchor_cert)


async def create_service_account(api: kclient.ApiClient, namespace: str, name: str) -> None:
    await kclient.CoreV1Api(api).create_namespaced_service_account(
        namespace, kclient.V1ServiceAccount(metadata=kclient.V1ObjectMeta(name=name)))


async def request_token(api: kclient.ApiClient, namespace: str, name: str, audiences: list[str]) -> bytes:
    """A real projected-style token (TokenRequest) for ServiceAccount `namespace/name`."""
    body = kclient.AuthenticationV1TokenRequest(
        spec=kclient.V1TokenRequestSpec(audiences=audiences, expiration_seconds=3600))
    answer = await kclient.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, body)
    return answer.status.token.encode()


def tls_client_context(anchor_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=anchor_pem.decode())
    ctx.set_alpn_protocols(["h2"])
    return ctx
