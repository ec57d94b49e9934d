"""The proxy's IdentityManager certifies over TLS to a real identity server (Kubernetes mode's transport).

Server: the real IdentityService (local token validator over a real SqliteStore)
serving with identity's own certificate (servingcert.py) on loopback. The proxy
verifies it with the trust anchors and MESHLET_PROXY_IDENTITY_SERVER_NAME.
"""
import asyncio
import hashlib

import pytest
import structlog
from grpclib.server import Server
from identity_helpers import ALICE, TD
from meshlet.controller.log import setup
from meshlet.controller.model import (
    Namespace,
    ObjectMeta,
    WorkloadToken,
    WorkloadTokenSpec,
)
from meshlet.controller.store import SqliteStore
from meshlet.identity.issuer import ensure_ca
from meshlet.identity.server import IdentityMetrics, IdentityService
from meshlet.identity.servingcert import ServingCert, service_names
from meshlet.identity.validator import LocalTokenValidator
from meshlet.proxy.config import ProxyConfig
from meshlet.proxy.identity import IdentityManager
from meshlet.proxy.metrics import ProxyMetrics
from prometheus_client import CollectorRegistry

TOKEN = b"alice-token-for-tls-test"


@pytest.fixture
async def tls_identity(tmp_path):
    store = SqliteStore(tmp_path / "store.db")
    await store.apply([
        Namespace(metadata=ObjectMeta(name="shop")),
        WorkloadToken(metadata=ObjectMeta(name="alice-0", namespace="shop"),
                      spec=WorkloadTokenSpec(service_account="alice", pod="alice-0",
                                             token_sha256=hashlib.sha256(TOKEN).hexdigest())),
    ])
    ca = ensure_ca(tmp_path / "ca", TD)
    service = IdentityService(ca=ca, validator=LocalTokenValidator(store),
                              metrics=IdentityMetrics.create(CollectorRegistry()), log=structlog.get_logger())
    server = Server([service])
    await server.start("127.0.0.1", 0, ssl=ServingCert(ca, service_names("meshlet-identity", "meshlet")).context)
    port = server._server.sockets[0].getsockname()[1]
    (tmp_path / "token").write_bytes(TOKEN)
    (tmp_path / "anchors.pem").write_bytes(ca.anchors_pem)
    try:
        yield ProxyConfig(identity=ALICE, token_file=str(tmp_path / "token"),
                          trust_anchors=str(tmp_path / "anchors.pem"), identity_addr=("127.0.0.1", port))
    finally:
        server.close()
        await server.wait_closed()
        await store.close()


async def _run(cfg: ProxyConfig, until) -> IdentityManager:
    idm = IdentityManager(cfg, ProxyMetrics("shop", "alice-0"), setup("test"))
    task = asyncio.create_task(idm.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not until(idm):
            assert loop.time() < deadline, idm.last_error
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return idm


async def test_certify_over_tls(tls_identity):
    cfg = ProxyConfig(**{**tls_identity.__dict__, "identity_server_name": "meshlet-identity.meshlet.svc"})
    idm = await _run(cfg, lambda m: m.ready.is_set())
    assert idm.current is not None and idm.current.uri == ALICE


async def test_wrong_server_name_is_refused(tls_identity):
    cfg = ProxyConfig(**{**tls_identity.__dict__, "identity_server_name": "meshlet-identity.elsewhere.svc"})
    idm = await _run(cfg, lambda m: "certificate" in m.last_error.lower())
    assert not idm.ready.is_set()


def test_server_name_from_env():
    env = {"MESHLET_PROXY_IDENTITY": ALICE, "MESHLET_PROXY_TOKEN_FILE": "/t", "MESHLET_PROXY_TRUST_ANCHORS": "/a",
           "MESHLET_PROXY_IDENTITY_ADDR": "10.0.0.1:8080",
           "MESHLET_PROXY_IDENTITY_SERVER_NAME": "meshlet-identity.meshlet.svc"}
    cfg = ProxyConfig.from_env(env)
    assert cfg.identity_server_name == "meshlet-identity.meshlet.svc"
    assert ProxyConfig.from_env({k: v for k, v in env.items() if "SERVER_NAME" not in k}).identity_server_name == ""
