"""SqliteStore: the local mesh's store, shared by several processes through one SQLite file.

- Writers use `BEGIN IMMEDIATE`, so resource versions are handed out in commit
  order; readers see a consistent snapshot (WAL). The SQL is in `store.sql`.
- Watches poll the change log (every `poll_interval`), so a watcher sees the
  writes of every process; an idle watch only probes `PRAGMA data_version`
  (store.poll), and its own store's writes wake it at once. Old log rows are compacted; a watch from before the
  compacted version raises Gone and the caller relists.
- Every SQLite call runs on one worker thread per store (one connection), so
  event loops never block on the file; transactions are short.
- sqlite3 errors (locked for too long, disk full) surface as StoreError.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from meshlet.controller.model import (
    DEFAULT_NAMESPACE,
    DEFAULT_REGISTRY,
    ConversionError,
    Namespace,
    ObjectMeta,
    Registry,
    Resource,
    UnknownKind,
    to_obj,
)
from meshlet.controller.model.registry import KindInfo
from meshlet.controller.store import sql
from meshlet.controller.store.base import Action, ApplyResult, EventType, KindRef, WatchEvent
from meshlet.controller.store.prepare import prepare
from meshlet.controller.store.errors import Conflict, Gone, Invalid, NotFound, StoreError
from meshlet.controller.store.poll import Probe, Wakeup

T = TypeVar("T")


class TxnView(Protocol):
    """What a defaulter may read inside the apply transaction (sees earlier objects of the same request)."""

    def list(self, kind: str) -> list[Resource]: ...


Defaulter = Callable[[Resource, "Resource | None", TxnView], Resource]
"""(incoming, existing or None, view) -> resource to store; raises Invalid to refuse."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode(resource: Resource) -> str:
    return json.dumps(to_obj(resource), separators=(",", ":"))


class SqliteStore:
    """Store backed by SQLite; see the module docstring. Satisfies `meshlet.controller.store.Store`."""

    def __init__(self, path: str | Path, *, defaulters: Sequence[Defaulter] = (),
                 registry: Registry = DEFAULT_REGISTRY, poll_interval: float = 0.05,
                 log_retention: int = 10_000, create: bool = True) -> None:
        self.path = Path(path)
        self.registry = registry
        self.poll_interval = poll_interval
        self.log_retention = log_retention
        self._defaulters = tuple(defaulters)
        self._create = create
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="meshlet-store")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._wakeups: set[Wakeup] = set()
        """Watchers of this instance, woken at once after its own writes (others' writes: by polling)."""

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path}>"

    # === plumbing (everything below `_run` executes on the store's thread) ===

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreError("store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"store {self.path}: {e}") from e

    async def _run_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._run(self._write, fn)
        finally:
            self._wake_watchers()

    def _wake_watchers(self) -> None:
        current = asyncio.get_running_loop()
        for wakeup in list(self._wakeups):
            if wakeup.loop is current:
                wakeup.wake()
            elif not wakeup.loop.is_closed():
                wakeup.loop.call_soon_threadsafe(wakeup.wake)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            if self._create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            elif not self.path.exists():
                raise StoreError(f"no store at {self.path}")
            self._conn = sql.connect(self.path, self._init)
        return self._conn

    def _init(self, conn: sqlite3.Connection) -> None:
        """A new store starts with the `default` Namespace, as a cluster does."""
        if sql.meta(conn) == 0 and "Namespace" in self.registry.kinds():
            rv = sql.next_rv(conn)
            ns = Namespace(metadata=ObjectMeta(name=DEFAULT_NAMESPACE, resource_version=rv, uid=str(uuid.uuid4()),
                                               creation_timestamp=_now(), generation=1))
            sql.put(conn, ns.key, rv, _encode(ns), EventType.ADDED.value)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return sql.read(self._db(), fn)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run(conn: sqlite3.Connection) -> T:
            result = fn(conn)
            rv, compacted = sql.meta(conn), sql.meta(conn, "compacted")
            if rv - compacted > self.log_retention + max(1, self.log_retention // 10):
                sql.compact(conn, rv - self.log_retention)
            return result
        return sql.write(self._db(), run)

    def _info(self, kind: KindRef) -> KindInfo:
        try:
            return self.registry.for_kind(kind)
        except UnknownKind as e:
            raise Invalid(str(e)) from None

    def _ns(self, info: KindInfo, namespace: str | None) -> str:
        return (namespace or DEFAULT_NAMESPACE) if info.namespaced else ""

    def _decode(self, body: str) -> Resource:
        data = json.loads(body)
        try:
            return self.registry.decode(data, strict=False)
        except ConversionError as e:
            meta = data.get("metadata") or {}
            raise StoreError(f"stored {data.get('kind')} {meta.get('namespace') or ''}/{meta.get('name')} "
                             f"cannot be read by this version of meshlet: {e}") from None

    async def compact(self, keep: int = 0) -> int:
        """Drop change-log rows, keeping the newest `keep`; returns the compacted version."""
        def run(conn: sqlite3.Connection) -> int:
            sql.compact(conn, max(0, sql.meta(conn) - keep))
            return sql.meta(conn, "compacted")
        return await self._run(self._write, run)

    # === reads ===

    async def get(self, kind: KindRef, namespace: str | None, name: str) -> Resource | None:
        info = self._info(kind)
        key = (info.kind, self._ns(info, namespace), name)
        body = await self._run(self._read, lambda conn: sql.body(conn, key))
        return None if body is None else self._decode(body)

    async def list(self, kind: KindRef, namespace: str | None = None) -> tuple[list[Resource], int]:
        info = self._info(kind)
        ns = self._ns(info, namespace) if namespace is not None else None

        def run(conn: sqlite3.Connection) -> tuple[list[str], int]:
            return sql.bodies(conn, [info.kind], ns), sql.meta(conn)
        bodies, rv = await self._run(self._read, run)
        return [self._decode(b) for b in bodies], rv

    async def resource_version(self) -> int:
        return await self._run(self._read, sql.meta)

    # === writes ===

    def _prepare(self, resources: Sequence[Resource]) -> list[Resource]:
        """Validate and default every object (before the transaction); Invalid lists all problems."""
        return prepare(self.registry, resources)

    def _apply_txn(self, conn: sqlite3.Connection, resources: list[Resource]) -> list[ApplyResult]:
        new_namespaces = {r.metadata.name for r in resources if isinstance(r, Namespace)}
        problems: list[str] = []
        for r in resources:
            ns = r.metadata.namespace
            if (r.namespaced and ns and ns != DEFAULT_NAMESPACE and ns not in new_namespaces
                    and sql.body(conn, ("Namespace", "", ns)) is None):
                problem = (f"{self.registry.for_kind(r.kind).display}/{r.metadata.name}: namespace {ns!r} not found "
                           "(create it, or apply its Namespace in the same request)")
                if problem not in problems:
                    problems.append(problem)
        if problems:
            raise Invalid(problems)
        return [self._put(conn, r) for r in resources]

    def _put(self, conn: sqlite3.Connection, incoming: Resource) -> ApplyResult:
        body = sql.body(conn, incoming.key)
        existing = None if body is None else self._decode(body)
        view = _View(self, conn)
        for defaulter in self._defaulters:
            incoming = defaulter(incoming, existing, view)
        if existing is None:
            rv = sql.next_rv(conn)
            stored = incoming.with_meta(resource_version=rv, uid=str(uuid.uuid4()),
                                        creation_timestamp=_now(), generation=1)
            sql.put(conn, stored.key, rv, _encode(stored), EventType.ADDED.value)
            return ApplyResult(stored, Action.CREATED)
        old = existing.metadata
        if incoming.metadata.resource_version and incoming.metadata.resource_version != old.resource_version:
            raise Conflict(f"{incoming.kind.lower()}/{incoming.metadata.name}: resourceVersion "
                           f"{incoming.metadata.resource_version} is stale (stored: {old.resource_version}); "
                           "get it again and retry")
        status = incoming.status if incoming.status is not None else existing.status
        candidate = replace(incoming, status=status, metadata=replace(
            incoming.metadata, resource_version=old.resource_version, uid=old.uid,
            creation_timestamp=old.creation_timestamp, generation=old.generation))
        if to_obj(candidate) == to_obj(existing):
            return ApplyResult(existing, Action.UNCHANGED)
        spec_changed = to_obj(incoming.spec) != to_obj(existing.spec)
        rv = sql.next_rv(conn)
        stored = candidate.with_meta(resource_version=rv, generation=old.generation + (1 if spec_changed else 0))
        sql.put(conn, stored.key, rv, _encode(stored), EventType.MODIFIED.value)
        return ApplyResult(stored, Action.CONFIGURED)

    async def apply(self, resources: Sequence[Resource]) -> list[ApplyResult]:
        prepared = self._prepare(resources)
        if not prepared:
            return []
        return await self._run_write(lambda conn: self._apply_txn(conn, prepared))

    def _delete_txn(self, conn: sqlite3.Connection, key: sql.Key) -> bool:
        body = sql.body(conn, key)
        if body is None:
            return False
        victims = [body]
        if key[0] == "Namespace":
            victims = sql.namespace_members(conn, key[2]) + victims
        for victim in map(self._decode, victims):
            gone = victim.with_meta(resource_version=sql.next_rv(conn))
            sql.remove(conn, gone.key, gone.metadata.resource_version, _encode(gone))
        return True

    async def delete(self, kind: KindRef, namespace: str | None, name: str) -> bool:
        info = self._info(kind)
        key = (info.kind, self._ns(info, namespace), name)
        return await self._run_write(lambda conn: self._delete_txn(conn, key))

    def _status_txn(self, conn: sqlite3.Connection, resource: Resource) -> Resource:
        body = sql.body(conn, resource.key)
        if body is None:
            kind, ns, name = resource.key
            raise NotFound(f"{kind.lower()}/{name} not found" + (f" in namespace {ns}" if ns else ""))
        existing = self._decode(body)
        rv = resource.metadata.resource_version
        if rv and rv != existing.metadata.resource_version:
            raise Conflict(f"{resource.kind.lower()}/{resource.metadata.name}: resourceVersion {rv} is stale "
                           f"(stored: {existing.metadata.resource_version})")
        if to_obj(resource.status) == to_obj(existing.status):
            return existing
        stored = replace(existing, status=resource.status).with_meta(resource_version=sql.next_rv(conn))
        sql.put(conn, stored.key, stored.metadata.resource_version, _encode(stored), EventType.MODIFIED.value)
        return stored

    async def update_status(self, resource: Resource) -> Resource:
        (resource,) = self._prepare([resource])  # a bad status must not reach readers
        return await self._run_write(lambda conn: self._status_txn(conn, resource))

    # === watch ===

    def _changes(self, since: int, kinds: list[str] | None, limit: int = 500) -> tuple[list[Any], int]:
        """(rv, type, body) rows after `since` and the version the next poll starts from."""
        def run(conn: sqlite3.Connection) -> tuple[list[Any], int]:
            rv, compacted = sql.meta(conn), sql.meta(conn, "compacted")
            if since < compacted:
                raise Gone(f"resource version {since} is too old (compacted up to {compacted}); list again")
            if since > rv:
                raise Gone(f"resource version {since} is newer than the store's ({rv}): the store was reset")
            rows = sql.changes(conn, since, kinds, limit)
            return rows, (rows[-1][0] if len(rows) == limit else rv)
        return self._read(run)

    async def watch(self, kinds: set[str] | str | None = None,
                    since: int | None = None) -> AsyncIterator[WatchEvent]:
        if isinstance(kinds, str):
            kinds = {kinds}
        names = None if kinds is None else sorted({self._info(k).kind for k in kinds})
        if since is None:
            def snapshot(conn: sqlite3.Connection) -> tuple[list[str], int]:
                return sql.bodies(conn, names), sql.meta(conn)
            bodies, since = await self._run(self._read, snapshot)
            for body in bodies:
                yield WatchEvent(EventType.ADDED, self._decode(body), since)
        loop = asyncio.get_running_loop()
        wakeup = Wakeup(loop)
        self._wakeups.add(wakeup)
        probe = Probe(self.path)
        try:
            while True:
                wakeup.woken = False
                probe.mark()  # before the query: a commit after it shows as a change
                rows, last = await self._run(self._changes, since, names)
                for rv, type_, body in rows:
                    yield WatchEvent(EventType(type_), self._decode(body), rv)
                since = last
                while not rows and not wakeup.woken and not probe.changed():
                    wakeup.event.clear()
                    timer = loop.call_later(self.poll_interval, wakeup.event.set)
                    try:
                        await wakeup.event.wait()
                    finally:
                        timer.cancel()
        finally:
            probe.close()
            self._wakeups.discard(wakeup)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _View:
    def __init__(self, store: SqliteStore, conn: sqlite3.Connection) -> None:
        self._store, self._conn = store, conn

    def list(self, kind: str) -> list[Resource]:
        info = self._store.registry.for_kind(kind)
        return [self._store._decode(b) for b in sql.bodies(self._conn, [info.kind])]
