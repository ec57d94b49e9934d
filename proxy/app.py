"""Wiring of the proxy process: builds every piece from `ProxyConfig` and runs until shutdown."""
from __future__ import annotations

import asyncio
import signal
import socket
import time
from typing import Any

from . import admin
from .client import Connector, Pools
from .config import ProxyConfig
from .dataplane import DataPlane
from .dstclient import DestinationClient
from .identity import IdentityManager
from .metrics import ProxyMetrics
from .mirror import Mirrors
from .origdst import accept_loop, listen
from .profiles import Profiles
from .resolve import Resolver
from .routing import InboundRouter, OutboundRouter


class Proxy:
    def __init__(self, cfg: ProxyConfig, log: Any) -> None:
        self.cfg = cfg
        self.log = log
        self.metrics = ProxyMetrics(cfg.namespace, cfg.pod)
        self.idm = IdentityManager(cfg, self.metrics, log) if cfg.identity else None
        self.destination = DestinationClient.from_config(cfg)
        """One channel to destination for every discovery and profile stream of this proxy."""
        self.resolver = Resolver(cfg, self.metrics, log, self.destination)
        self.connector = Connector(self.idm, cfg.connect_timeout)
        self.pools = Pools(self.connector, self.metrics, max_idle=cfg.pool_max_idle, idle_timeout=cfg.idle_timeout)
        self.profiles = Profiles(cfg, log, self.destination)
        self.outbound = OutboundRouter(cfg, self.resolver, self.pools, self.metrics, profiles=self.profiles)
        self.mirrors = self.outbound.mirrors = Mirrors(self.outbound.mirror_pool, log)
        self.dataplane = DataPlane(
            cfg, metrics=self.metrics, idm=self.idm, connector=self.connector, pools=self.pools, log=log,
            outbound=self.outbound, inbound=InboundRouter(cfg, self.pools, self.metrics),
        )
        self.listening = False
        self.stopping = asyncio.Event()
        self.started = time.monotonic()
        self._sockets: list[socket.socket] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._servers: list[asyncio.AbstractServer] = []

    @property
    def ready(self) -> bool:
        return self.listening and not self.stopping.is_set() and (self.idm is None or self.idm.current is not None)

    async def start(self) -> None:
        cfg, loop = self.cfg, asyncio.get_running_loop()
        if self.idm is not None:
            self._tasks.append(loop.create_task(self.idm.run(), name="identity"))
        await self._serve_admin()
        for port, handler in ((cfg.ports.outbound, self.dataplane.handle_outbound),
                              (cfg.ports.inbound, self.dataplane.handle_inbound)):
            sock = self._listen(cfg.bind_ip, port)
            self._sockets.append(sock)
            self._tasks.append(loop.create_task(accept_loop(sock, handler, self.log), name=f"accept {port}"))
        self.listening = True
        self._tasks.append(loop.create_task(self._settle_heap(), name="gc"))
        self._log_listening()

    async def _serve_admin(self) -> None:
        """Admin 15000, metrics 15090, health 15021 (a worker serves its admin routes elsewhere)."""
        cfg = self.cfg
        self._servers.append(await admin.serve(cfg.bind_ip, cfg.ports.admin, {
            ("GET", "/ready"): self._ready, ("GET", "/live"): self._live,
            ("GET", "/config_dump"): self._config_dump, ("POST", "/shutdown"): self._shutdown,
        }))
        self._servers.append(await admin.serve(cfg.bind_ip, cfg.ports.metrics, {
            ("GET", "/metrics"): self._metrics, ("GET", "/stats/prometheus"): self._metrics,
        }))
        self._servers.append(await admin.serve(cfg.bind_ip, cfg.ports.health, {
            ("GET", "/healthz/ready"): self._ready,
        }))

    def _listen(self, host: str, port: int) -> socket.socket:
        return listen(host, port)

    def _log_listening(self) -> None:
        cfg = self.cfg
        self.log.info("proxy.listening", outbound=cfg.ports.outbound, inbound=cfg.ports.inbound,
                      admin=cfg.ports.admin, identity=cfg.identity or None)

    async def _settle_heap(self) -> None:
        """Once started (imports done, first certificate in), move every object so far out of the
        cyclic GC's reach: full collections then only walk what requests create, which keeps
        collector pauses out of the latency tail. Per-request objects are freed by refcounting."""
        import gc

        if self.idm is not None:
            await self.idm.ready.wait()
        await asyncio.sleep(0.5)  # let the first discovery streams import their modules
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)

    async def run_until_stopped(self) -> None:
        await self.stopping.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Graceful drain: stop accepting, finish in-flight requests, then close everything."""
        self.stopping.set()
        self.log.info("proxy.draining", http_connections=len(self.dataplane.http_conns))
        for task in self._tasks:
            if task.get_name().startswith("accept"):
                task.cancel()
        for sock in self._sockets:
            sock.close()
        self.dataplane.drain()
        deadline = time.monotonic() + self.cfg.drain_timeout
        while self.dataplane.http_conns and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.resolver.close()
        await self.profiles.close()
        self.destination.close()
        await self.mirrors.close()
        self.pools.close()
        for server in self._servers:
            server.close()
        self.log.info("proxy.stopped")

    # === admin handlers ===

    async def _ready(self) -> tuple[int, str, bytes]:
        if self.ready:
            return admin.text(200, "ready\n")
        why = "draining" if self.stopping.is_set() else "no certificate yet" if self.listening else "starting"
        return admin.text(503, f"not ready: {why}\n")

    async def _live(self) -> tuple[int, str, bytes]:
        return admin.text(200, "live\n")

    async def _shutdown(self) -> tuple[int, str, bytes]:
        asyncio.get_running_loop().call_soon(self.stopping.set)
        return admin.text(200, "shutting down\n")

    async def _metrics(self) -> tuple[int, str, bytes]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)

    async def _config_dump(self) -> tuple[int, str, bytes]:
        mat = self.idm.current if self.idm is not None else None
        return admin.as_json(200, {
            "config": self.cfg.public(),
            "ready": self.ready,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "identity": {**(mat.dump() if mat is not None else {"uri": self.cfg.identity or None}),
                         "last_error": self.idm.last_error if self.idm is not None else ""},
            "destinations": self.resolver.snapshot(),
            "profiles": self.profiles.snapshot(),
            "mirror": {"sent": self.mirrors.sent, "dropped": self.mirrors.dropped, "inflight": self.mirrors.inflight},
        })


async def run(cfg: ProxyConfig, log: Any) -> None:
    proxy = Proxy(cfg, log)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, proxy.stopping.set)
    await proxy.start()
    await proxy.run_until_stopped()


def main() -> int:
    import uvloop
    from meshlet.controller.log import setup

    from .config import ConfigError

    try:
        cfg = ProxyConfig.from_env()
    except ConfigError as e:
        import sys

        print(f"meshlet-proxy: {e}", file=sys.stderr)
        return 2
    log = setup("proxy", cfg.log_level).bind(namespace=cfg.namespace, pod=cfg.pod)
    import logging

    for noisy in ("hpack", "h2", "grpclib"):  # their debug output is per frame
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        uvloop.run(run(cfg, log))
    except OSError as e:  # a port taken, most likely
        log.error("proxy.failed", error=e.strerror or str(e))
        return 1
    return 0
