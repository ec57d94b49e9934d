"""HTTP/2 over the mesh's mTLS on loopback: ALPN "h2" is offered only by the h2 client context
and chosen by the inbound context; an `H2Pool` with an identity runs streams over it and
checks the peer's SPIFFE id."""
from __future__ import annotations

import asyncio
import ssl
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from h2_apps import PlainH2
from meshlet.proxy.errors import PeerIdentityError
from meshlet.proxy.h2.upstream import H2Pool
from meshlet.proxy.identity import generate_key, material_from
from test_h2_pool import _get
from test_identity_unit import _ca, _sign, public_key

ID = "spiffe://cluster.local/ns/demo/sa/web"


@pytest.fixture(scope="module")
def mat():
    ca_key, ca = _ca()
    key = generate_key()
    trust = ca.public_bytes(serialization.Encoding.PEM)
    return material_from(key, ID, _sign(ca_key, ca, public_key(key), ID), [], trust)


@pytest.fixture
async def tls_server(mat):
    srv = await asyncio.get_running_loop().create_server(lambda: PlainH2("tls"), "127.0.0.1", 0, ssl=mat.server_ctx)
    yield srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()


async def _alpn(port: int, ctx: ssl.SSLContext) -> str | None:
    _, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="")
    got = w.get_extra_info("ssl_object").selected_alpn_protocol()
    w.close()
    return got


async def test_alpn_h2_only_for_the_h2_client_context(mat, tls_server) -> None:
    assert await _alpn(tls_server, mat.h2_client_ctx) == "h2"
    assert await _alpn(tls_server, mat.client_ctx) is None  # HTTP/1 and TCP connections: as before


async def test_pool_streams_over_mtls_and_checks_the_peer_id(mat, tls_server) -> None:
    idm = SimpleNamespace(current=mat)
    pool = H2Pool("127.0.0.1", tls_server, ID, "", idm, None, 5.0, 60.0)  # type: ignore[arg-type]
    sinks = await asyncio.gather(*(_get(pool, f"/{i}") for i in range(5)))
    assert [s.body for s in sinks] == [f"tls /{i} end-user=".encode() for i in range(5)]
    assert len(pool.conns) == 1
    assert pool.conns[0].transport.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
    pool.close()
    wrong = H2Pool("127.0.0.1", tls_server, "spiffe://cluster.local/ns/demo/sa/other", "", idm, None, 5.0, 60.0)  # type: ignore[arg-type]
    with pytest.raises(PeerIdentityError, match="expected spiffe://cluster.local/ns/demo/sa/other"):
        await wrong.acquire()
