"""`python -m meshlet.destination`: the destination control-plane service.

Watches Services, Pods and the traffic resources in the store and streams
endpoints and route profiles to proxies (see README.md); the admin port also
serves /debug/profile and /debug/endpoints (debug.py).
"""
from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import structlog
from meshlet.controller.config import LocalConfig
from meshlet.controller.log import setup as setup_log
from meshlet.controller.serve import (
    GrpcServeSpec,
    ServeState,
    admin_app,
    run_grpc,
    split_hostport,
)
from meshlet.controller.store.errors import StoreError
from meshlet.controller.store.open import StoreSettings, open_store, store_options
from prometheus_client import CollectorRegistry

from .debug import add_debug_routes
from .profile_watcher import ProfileWatcher
from .server import DEFAULT_QUEUE_CAPACITY, DestinationMetrics, DestinationService
from .watcher import EndpointsWatcher

DEFAULT_LISTEN = "198.18.0.1:8086"
DEFAULT_ADMIN_PORT = 9996


@dataclass(frozen=True)
class DestinationSettings:
    state_dir: Path
    listen: tuple[str, int]
    admin_listen: tuple[str, int]
    trust_domain: str
    stream_queue_capacity: int
    log_level: str
    store: StoreSettings = StoreSettings()

    @property
    def db_path(self) -> Path:
        return self.state_dir / "store.db"


async def serve(settings: DestinationSettings) -> None:
    from meshlet.controller.store import SqliteStore

    log = setup_log("destination", settings.log_level)
    store = await open_store(settings.store, lambda: SqliteStore(settings.db_path), log=log)
    try:
        await serve_store(settings, store, log)
    finally:
        await store.close()


async def serve_store(settings: DestinationSettings, store: Any, log: structlog.stdlib.BoundLogger) -> None:
    """Serve `store`'s Services, endpoints and traffic resources until a signal."""
    registry = CollectorRegistry()
    watcher = EndpointsWatcher(trust_domain=settings.trust_domain, log=log)
    profiles = ProfileWatcher(watcher, log)
    service = DestinationService(
        watcher=watcher,
        metrics=DestinationMetrics.create(registry),
        log=log,
        queue_capacity=settings.stream_queue_capacity,
        profiles=profiles,
    )
    state = ServeState()
    admin = admin_app(ready=lambda: state.serving and watcher.ready, registry=registry)
    add_debug_routes(admin, watcher, profiles)
    # Serve only once the initial list is loaded: an early caller would
    # otherwise be told "not a mesh service" for services that exist.
    await run_grpc(
        GrpcServeSpec(name="destination", handlers=[service], listen=settings.listen,
                      admin_listen=settings.admin_listen, log_fields={"trust_domain": settings.trust_domain}),
        admin=admin, log=log, state=state,
        background={"endpoints-watcher": watcher.run(store)}, gate=watcher.wait_ready,
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State dir holding store.db; default $MESHLET_STATE_DIR or /var/lib/meshlet.")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, help="gRPC address host:port.")
@click.option("--admin-listen", default=None, help=f"Admin HTTP host:port [default: <listen host>:{DEFAULT_ADMIN_PORT}].")
@click.option("--trust-domain", default=None, help="Trust domain [default: $MESHLET_TRUST_DOMAIN or cluster.local].")
@click.option("--stream-queue-capacity", type=click.IntRange(min=1), default=DEFAULT_QUEUE_CAPACITY,
              show_default=True, help="Updates buffered per Get stream before a slow client is disconnected.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@store_options
def main(state_dir: Path | None, listen: str, admin_listen: str | None, trust_domain: str | None,
         stream_queue_capacity: int, log_level: str, store: str, kubeconfig: Path | None,
         kube_context: str | None) -> None:
    cfg = LocalConfig.from_env(state_dir)
    try:
        listen_addr = split_hostport(listen, what="--listen")
        admin_addr = split_hostport(admin_listen or f"{listen_addr[0]}:{DEFAULT_ADMIN_PORT}", what="--admin-listen")
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    settings = DestinationSettings(
        state_dir=cfg.state_dir,
        listen=listen_addr,
        admin_listen=admin_addr,
        trust_domain=trust_domain or cfg.trust_domain,
        stream_queue_capacity=stream_queue_capacity,
        log_level=log_level,
        store=StoreSettings.from_options(store, kubeconfig, kube_context),
    )
    try:
        asyncio.run(serve(settings))
    except (OSError, StoreError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
