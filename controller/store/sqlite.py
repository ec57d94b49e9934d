"""SqliteStore: the local mesh's store, shared by several processes through one SQLite file.

Tables: `resources` (current objects, JSON bodies), `changes` (the change log, one
row per ADDED/MODIFIED/DELETED with the object's JSON) and `meta` (the global
resource version `rv` and `compacted`, the newest rv removed from the log).

- Writers use `BEGIN IMMEDIATE`, so resource versions are handed out in commit
  order; readers see a consistent snapshot (WAL).
- Watches poll the change log (every `poll_interval`), so a watcher sees writes
  of any process. Old log rows are compacted; a watch from before the compacted
  version raises Gone and the caller relists.
- Every SQLite call runs on one worker thread per store (one connection), so event
  loops never block on the file; transactions are short.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from meshlet.controller.model import (
    DEFAULT_NAMESPACE,
    DEFAULT_REGISTRY,
    ConversionError,
    Namespace,
    ObjectMeta,
    Registry,
    Resource,
    UnknownKind,
    default_resource,
    to_obj,
)
from meshlet.controller.model.registry import KindInfo
from meshlet.controller.store.base import Action, ApplyResult, EventType, KindRef, WatchEvent
from meshlet.controller.store.errors import Conflict, Gone, Invalid, NotFound, StoreError

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    rv INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name));
CREATE TABLE IF NOT EXISTS changes (
    rv INTEGER PRIMARY KEY, type TEXT NOT NULL,
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('rv', 0), ('compacted', 0), ('schema', 1);
"""


class TxnView(Protocol):
    """What a defaulter may read inside the apply transaction (sees earlier objects of the same request)."""

    def list(self, kind: str) -> list[Resource]: ...


Defaulter = Callable[[Resource, "Resource | None", TxnView], Resource]
"""(incoming, existing or None, view) -> resource to store; raises Invalid to refuse."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Changes:
    rows: list[tuple[int, str, str]]  # (rv, type, body)
    last: int


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

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path}>"

    # === plumbing ===

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreError("store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            if self._create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            elif not self.path.exists():
                raise StoreError(f"no store at {self.path}")
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                self._ensure_default_namespace(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._db()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            self._maybe_compact(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _info(self, kind: KindRef) -> KindInfo:
        try:
            return self.registry.for_kind(kind)
        except UnknownKind as e:
            raise Invalid(str(e)) from None

    def _ns(self, info: KindInfo, namespace: str | None) -> str:
        return (namespace or DEFAULT_NAMESPACE) if info.namespaced else ""

    def _decode(self, body: str) -> Resource:
        return self.registry.decode(json.loads(body))

    @staticmethod
    def _encode(resource: Resource) -> str:
        return json.dumps(to_obj(resource), separators=(",", ":"))

    @staticmethod
    def _rv(conn: sqlite3.Connection, key: str = "rv") -> int:
        return int(conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    @staticmethod
    def _next_rv(conn: sqlite3.Connection) -> int:
        return int(conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'rv' RETURNING value").fetchone()[0])

    def _log(self, conn: sqlite3.Connection, type_: EventType, resource: Resource, body: str) -> None:
        kind, ns, name = resource.key
        conn.execute("INSERT INTO changes (rv, type, kind, namespace, name, body) VALUES (?, ?, ?, ?, ?, ?)",
                     (resource.metadata.resource_version, type_.value, kind, ns, name, body))

    def _store_row(self, conn: sqlite3.Connection, resource: Resource, type_: EventType) -> None:
        body = self._encode(resource)
        kind, ns, name = resource.key
        conn.execute("INSERT OR REPLACE INTO resources (kind, namespace, name, rv, body) VALUES (?, ?, ?, ?, ?)",
                     (kind, ns, name, resource.metadata.resource_version, body))
        self._log(conn, type_, resource, body)

    def _ensure_default_namespace(self, conn: sqlite3.Connection) -> None:
        if "Namespace" not in self.registry.kinds():
            return
        row = conn.execute("SELECT 1 FROM resources WHERE kind = 'Namespace' AND name = ?",
                           (DEFAULT_NAMESPACE,)).fetchone()
        if row is None and self._rv(conn) == 0:
            rv = self._next_rv(conn)
            ns = Namespace(metadata=ObjectMeta(name=DEFAULT_NAMESPACE, resource_version=rv, uid=str(uuid.uuid4()),
                                               creation_timestamp=_now(), generation=1))
            self._store_row(conn, ns, EventType.ADDED)

    def _maybe_compact(self, conn: sqlite3.Connection) -> None:
        rv = self._rv(conn)
        compacted = self._rv(conn, "compacted")
        if rv - compacted > self.log_retention + max(1, self.log_retention // 10):
            self._compact(conn, rv - self.log_retention)

    def _compact(self, conn: sqlite3.Connection, upto: int) -> None:
        conn.execute("DELETE FROM changes WHERE rv <= ?", (upto,))
        conn.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'compacted'", (upto,))

    async def compact(self, keep: int = 0) -> int:
        """Drop change-log rows, keeping the newest `keep`; returns the compacted version."""
        def run(conn: sqlite3.Connection) -> int:
            upto = max(0, self._rv(conn) - keep)
            self._compact(conn, upto)
            return self._rv(conn, "compacted")
        return await self._run(self._write, run)

    # === reads ===

    async def get(self, kind: KindRef, namespace: str | None, name: str) -> Resource | None:
        info = self._info(kind)
        key = (info.kind, self._ns(info, namespace), name)

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT body FROM resources WHERE kind = ? AND namespace = ? AND name = ?",
                               key).fetchone()
            return row[0] if row else None
        body = await self._run(self._read, run)
        return None if body is None else self._decode(body)

    async def list(self, kind: KindRef, namespace: str | None = None) -> tuple[list[Resource], int]:
        info = self._info(kind)
        ns = self._ns(info, namespace) if namespace is not None else None

        def run(conn: sqlite3.Connection) -> tuple[list[str], int]:
            if ns is None:
                rows = conn.execute("SELECT body FROM resources WHERE kind = ? ORDER BY namespace, name",
                                    (info.kind,)).fetchall()
            else:
                rows = conn.execute("SELECT body FROM resources WHERE kind = ? AND namespace = ? ORDER BY name",
                                    (info.kind, ns)).fetchall()
            return [r[0] for r in rows], self._rv(conn)
        bodies, rv = await self._run(self._read, run)
        return [self._decode(b) for b in bodies], rv

    async def resource_version(self) -> int:
        return await self._run(self._read, self._rv)

    # === writes ===

    def _prepare(self, resources: Sequence[Resource]) -> list[Resource]:
        """Validate and default every object (outside the transaction); Invalid lists all problems."""
        problems: list[str] = []
        out: list[Resource] = []
        for i, resource in enumerate(resources):
            if not isinstance(resource, Resource):
                problems.append(f"item {i + 1}: expected a Resource, got {type(resource).__name__}")
                continue
            try:
                info = self.registry.for_kind(resource.kind)
                if info.cls is not type(resource):
                    raise UnknownKind(f"kind {resource.kind} is not registered with this store")
                # a round trip through the converter runs every validation the loader runs
                checked = self.registry.decode(to_obj(default_resource(resource)))
            except (ConversionError, UnknownKind) as e:
                problems.append(f"{resource.kind.lower()}/{resource.metadata.name}: {e}")
                continue
            out.append(checked)
        if problems:
            raise Invalid(problems)
        return out

    def _apply_txn(self, conn: sqlite3.Connection, resources: list[Resource]) -> list[ApplyResult]:
        new_namespaces = {r.metadata.name for r in resources if isinstance(r, Namespace)}
        problems = []
        for r in resources:
            ns = r.metadata.namespace
            if r.namespaced and ns and ns != DEFAULT_NAMESPACE and ns not in new_namespaces:
                row = conn.execute("SELECT 1 FROM resources WHERE kind = 'Namespace' AND name = ?", (ns,)).fetchone()
                if row is None:
                    problems.append(f"{self.registry.for_kind(r.kind).display}/{r.metadata.name}: "
                                    f"namespace {ns!r} not found (create it, or apply its Namespace in the same request)")
        if problems:
            raise Invalid(sorted(set(problems), key=problems.index))
        return [self._put(conn, r) for r in resources]

    def _put(self, conn: sqlite3.Connection, incoming: Resource) -> ApplyResult:
        kind, ns, name = incoming.key
        row = conn.execute("SELECT body FROM resources WHERE kind = ? AND namespace = ? AND name = ?",
                           (kind, ns, name)).fetchone()
        existing = self._decode(row[0]) if row else None
        view = _View(self, conn)
        for defaulter in self._defaulters:
            incoming = defaulter(incoming, existing, view)
        if existing is None:
            rv = self._next_rv(conn)
            stored = incoming.with_meta(resource_version=rv, uid=str(uuid.uuid4()),
                                        creation_timestamp=_now(), generation=1)
            self._store_row(conn, stored, EventType.ADDED)
            return ApplyResult(stored, Action.CREATED)
        old_meta = existing.metadata
        if incoming.metadata.resource_version and incoming.metadata.resource_version != old_meta.resource_version:
            raise Conflict(f"{kind.lower()}/{name}: resourceVersion {incoming.metadata.resource_version} is stale "
                           f"(stored: {old_meta.resource_version}); get it again and retry")
        status = incoming.status if incoming.status is not None else existing.status
        spec_changed = to_obj(incoming.spec) != to_obj(existing.spec)
        candidate = replace(incoming, status=status, metadata=replace(
            incoming.metadata, resource_version=old_meta.resource_version, uid=old_meta.uid,
            creation_timestamp=old_meta.creation_timestamp, generation=old_meta.generation))
        if to_obj(candidate) == to_obj(existing):
            return ApplyResult(existing, Action.UNCHANGED)
        rv = self._next_rv(conn)
        stored = candidate.with_meta(resource_version=rv,
                                     generation=old_meta.generation + (1 if spec_changed else 0))
        self._store_row(conn, stored, EventType.MODIFIED)
        return ApplyResult(stored, Action.CONFIGURED)

    async def apply(self, resources: Sequence[Resource]) -> list[ApplyResult]:
        prepared = self._prepare(resources)
        if not prepared:
            return []
        return await self._run(self._write, lambda conn: self._apply_txn(conn, prepared))

    def _delete_txn(self, conn: sqlite3.Connection, kind: str, ns: str, name: str) -> bool:
        row = conn.execute("SELECT body FROM resources WHERE kind = ? AND namespace = ? AND name = ?",
                           (kind, ns, name)).fetchone()
        if row is None:
            return False
        victims = [self._decode(row[0])]
        if kind == "Namespace":
            children = conn.execute("SELECT body FROM resources WHERE namespace = ? AND kind != 'Namespace' "
                                    "ORDER BY kind, name", (name,)).fetchall()
            victims = [self._decode(b) for (b,) in children] + victims
        for victim in victims:
            k, n, nm = victim.key
            conn.execute("DELETE FROM resources WHERE kind = ? AND namespace = ? AND name = ?", (k, n, nm))
            gone = victim.with_meta(resource_version=self._next_rv(conn))
            self._log(conn, EventType.DELETED, gone, self._encode(gone))
        return True

    async def delete(self, kind: KindRef, namespace: str | None, name: str) -> bool:
        info = self._info(kind)
        ns = self._ns(info, namespace)
        return await self._run(self._write, lambda conn: self._delete_txn(conn, info.kind, ns, name))

    def _status_txn(self, conn: sqlite3.Connection, resource: Resource) -> Resource:
        kind, ns, name = resource.key
        row = conn.execute("SELECT body FROM resources WHERE kind = ? AND namespace = ? AND name = ?",
                           (kind, ns, name)).fetchone()
        if row is None:
            raise NotFound(f"{kind.lower()}/{name} not found in namespace {ns or '-'}")
        existing = self._decode(row[0])
        rv = resource.metadata.resource_version
        if rv and rv != existing.metadata.resource_version:
            raise Conflict(f"{kind.lower()}/{name}: resourceVersion {rv} is stale "
                           f"(stored: {existing.metadata.resource_version})")
        if to_obj(resource.status) == to_obj(existing.status):
            return existing
        stored = replace(existing, status=resource.status).with_meta(resource_version=self._next_rv(conn))
        self._store_row(conn, stored, EventType.MODIFIED)
        return stored

    async def update_status(self, resource: Resource) -> Resource:
        resource = default_resource(resource)
        self._info(resource.kind)
        return await self._run(self._write, lambda conn: self._status_txn(conn, resource))

    # === watch ===

    def _snapshot(self, kinds: list[str] | None) -> tuple[list[str], int]:
        def run(conn: sqlite3.Connection) -> tuple[list[str], int]:
            if kinds is None:
                rows = conn.execute("SELECT body FROM resources ORDER BY kind, namespace, name").fetchall()
            else:
                marks = ",".join("?" * len(kinds))
                rows = conn.execute(f"SELECT body FROM resources WHERE kind IN ({marks}) "
                                    "ORDER BY kind, namespace, name", kinds).fetchall()
            return [r[0] for r in rows], self._rv(conn)
        return self._read(run)

    def _changes(self, since: int, kinds: list[str] | None, limit: int = 500) -> _Changes:
        def run(conn: sqlite3.Connection) -> _Changes:
            rv, compacted = self._rv(conn), self._rv(conn, "compacted")
            if since < compacted:
                raise Gone(f"resource version {since} is too old (compacted up to {compacted}); list again")
            if since > rv:
                raise Gone(f"resource version {since} is newer than the store's ({rv}): the store was reset")
            if kinds is None:
                rows = conn.execute("SELECT rv, type, body FROM changes WHERE rv > ? ORDER BY rv LIMIT ?",
                                    (since, limit)).fetchall()
            else:
                marks = ",".join("?" * len(kinds))
                rows = conn.execute(f"SELECT rv, type, body FROM changes WHERE rv > ? AND kind IN ({marks}) "
                                    "ORDER BY rv LIMIT ?", (since, *kinds, limit)).fetchall()
            last = rows[-1][0] if len(rows) == limit else rv
            return _Changes(rows, last)
        return self._read(run)

    async def watch(self, kinds: set[str] | None = None, since: int | None = None) -> AsyncIterator[WatchEvent]:
        names = None if kinds is None else sorted({self._info(k).kind for k in kinds})
        if since is None:
            bodies, since = await self._run(self._snapshot, names)
            for body in bodies:
                yield WatchEvent(EventType.ADDED, self._decode(body), since)
        while True:
            changes = await self._run(self._changes, since, names)
            for rv, type_, body in changes.rows:
                yield WatchEvent(EventType(type_), self._decode(body), rv)
            since = changes.last
            if not changes.rows:
                await asyncio.sleep(self.poll_interval)

    async def close(self) -> None:
        if self._closed:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._closed = True
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> "SqliteStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _View:
    def __init__(self, store: SqliteStore, conn: sqlite3.Connection) -> None:
        self._store, self._conn = store, conn

    def list(self, kind: str) -> list[Resource]:
        info = self._store.registry.for_kind(kind)
        rows = self._conn.execute("SELECT body FROM resources WHERE kind = ? ORDER BY namespace, name",
                                  (info.kind,)).fetchall()
        return [self._store._decode(b) for (b,) in rows]
