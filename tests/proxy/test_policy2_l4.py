"""Opaque (tcp:/tls:) routes with the backend's policy, the pure parts: subset names kept,
the connection slot given back once, splice ends reporting their close."""
from __future__ import annotations

import asyncio

from meshlet.api import destination_pb as pb
from meshlet.proxy.cluster import Limiter
from meshlet.proxy.l4routes import compile_l4
from meshlet.proxy.splice import SpliceEnd
from meshlet.proxy.tcprouting import TcpRoute


def test_l4_backends_keep_their_subset_name() -> None:
    m = pb.DestinationProfile(tcp_routes=[pb.L4Route(backends=[
        pb.WeightedDst(authority="db:5432", subset="v2", subset_labels={"version": "v2"})])])
    b = compile_l4(m, {}).tcp[0].backends[0]
    assert (b.authority, b.subset, b.subset_labels) == ("db:5432", "v2", (("version", "v2"),))


def test_tcp_route_releases_its_connection_slot() -> None:
    kinds: list[str] = []
    lim = Limiter(1, 0, 0, kinds.append)
    lim.try_connection()
    r = TcpRoute("10.0.0.1", 5432, "", "", (), None, lim)
    try:
        lim.try_connection()
        raise AssertionError("a second connection was let through")
    except Exception as e:  # noqa: BLE001
        assert str(e) == "overflow"
    r.release()
    assert lim.active == 0 and kinds == ["connections"]
    TcpRoute("10.0.0.1", 5432, "", "", ()).release()  # no permit: nothing to give back


class _T(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_splice_end_calls_its_close_callback_once() -> None:
    calls: list[int] = []
    end = SpliceEnd(None)
    end.connection_made(_T())
    end.on_close(lambda: calls.append(1))
    end.connection_lost(None)
    end.connection_lost(None)
    assert calls == [1]
