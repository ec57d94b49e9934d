"""Where `dataplane` hands over a connection that starts with the HTTP/2 preface."""
from __future__ import annotations

import random
from typing import Any

from ..exchange import ConnCtx
from ..identity import IdentityManager
from .mirror import H2Mirrors
from .server import H2Server
from .upstream import H2Pools


class H2Plane:
    """The HTTP/2 side of the data plane: its upstream pools and the servers of h2 connections."""

    def __init__(self, outbound: Any, inbound: Any, idm: IdentityManager | None, conns: set[Any], log: Any, *,
                 connect_timeout: float, idle_timeout: float, rng: random.Random | None = None) -> None:
        self.outbound = outbound
        self.inbound = inbound
        self.pools = H2Pools(idm, connect_timeout, idle_timeout)
        self.conns = conns
        """Open downstream connections (drained at shutdown with the HTTP/1 ones)."""
        self.log = log.bind(component="h2")
        self.rng = rng or random.Random()
        self.mirrors = H2Mirrors(self.pools, self.log)
        if hasattr(outbound, "upgrade_pools"):  # h2UpgradePolicy: HTTP/1.1 requests over these h2 pools
            from ..client import Pools
            from .upgrade import UpgradeConnector

            base = outbound.pools
            outbound.upgrade_pools = Pools(UpgradeConnector(self.pools), outbound.metrics,
                                           max_idle=base.max_idle, idle_timeout=base.idle_timeout)

    def serve(self, sniff: Any, ctx: ConnCtx) -> H2Server:
        """Serve a sniffed connection (`sniff.Sniff` with verdict HTTP2) as HTTP/2."""
        router = self.outbound if ctx.direction == "outbound" else self.inbound
        srv = H2Server(router, ctx, sniff.metrics, self.pools, self.conns, self.log, self.rng, self.mirrors)
        srv.attach(sniff.transport, sniff.take())
        return srv

    def close(self) -> None:
        self.mirrors.close()
        self.pools.close()
