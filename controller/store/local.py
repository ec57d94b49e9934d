"""Opening the local mesh's store from a LocalConfig (what the CLI, runtime, destination and identity call)."""
from __future__ import annotations

from meshlet.controller.config import LocalConfig
from meshlet.controller.store.allocator import ClusterIPAllocator
from meshlet.controller.store.sqlite import SqliteStore


def open_local_store(cfg: LocalConfig, *, create: bool = True, poll_interval: float = 0.05) -> SqliteStore:
    """The SqliteStore at `cfg.db_path`, allocating Service VIPs from `cfg.service_cidr`.

    create=False: the store must already exist (StoreError on first use otherwise).
    """
    return SqliteStore(cfg.db_path, defaulters=[ClusterIPAllocator(cfg.service_cidr)],
                       create=create, poll_interval=poll_interval)
