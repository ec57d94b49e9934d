"""The resource store: `Store` protocol, SQLite backend, clusterIP allocator, errors.

Typical use (any process of the local mesh):

    store = open_local_store(cfg)            # cfg: LocalConfig
    results = await store.apply([svc, pod])  # all-or-nothing
    items, rv = await store.list("Pod", "bookinfo")
    async for ev in store.watch({"Service", "Pod"}):   # snapshot as ADDED, then changes
        ...
    await store.close()
"""
from meshlet.controller.store.allocator import ClusterIPAllocator
from meshlet.controller.store.base import Action, ApplyResult, EventType, KindRef, Store, WatchEvent
from meshlet.controller.store.errors import Conflict, Gone, Invalid, NotFound, StoreError
from meshlet.controller.store.local import open_local_store
from meshlet.controller.store.sqlite import Defaulter, SqliteStore, TxnView

__all__ = [
    "Action",
    "ApplyResult",
    "ClusterIPAllocator",
    "Conflict",
    "Defaulter",
    "EventType",
    "Gone",
    "Invalid",
    "KindRef",
    "NotFound",
    "SqliteStore",
    "Store",
    "StoreError",
    "TxnView",
    "WatchEvent",
    "open_local_store",
]
