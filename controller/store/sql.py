"""The SQL of the SQLite store: schema, transactions and row helpers (no resource types here).

Tables: `resources` (current objects, JSON bodies), `changes` (the change log,
one row per ADDED/MODIFIED/DELETED with the object's JSON as of that change)
and `meta` (`rv`: the global resource version; `compacted`: the newest rv
removed from the log).
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
Key = tuple[str, str, str]  # (kind, namespace or "", name)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS resources (
        kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        rv INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (kind, namespace, name))""",
    """CREATE TABLE IF NOT EXISTS changes (
        rv INTEGER PRIMARY KEY, type TEXT NOT NULL,
        kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL)""",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('rv', 0), ('compacted', 0), ('schema', 1)",
)

BUSY_TIMEOUT_S = 30


def connect(path: Path, init: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
    """Open (creating the schema if needed, then calling `init` in the same transaction)."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        write(conn, lambda c: _create(c, init))
    except BaseException:
        conn.close()
        raise
    return conn


def _create(conn: sqlite3.Connection, init: Callable[[sqlite3.Connection], None]) -> None:
    for statement in SCHEMA:
        conn.execute(statement)
    init(conn)


def read(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` in a read transaction: every query sees the same snapshot."""
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("COMMIT")


def write(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` in a write transaction (BEGIN IMMEDIATE: writers queue up); rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def meta(conn: sqlite3.Connection, key: str = "rv") -> int:
    return int(conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])


def next_rv(conn: sqlite3.Connection) -> int:
    return int(conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'rv' RETURNING value").fetchone()[0])


def body(conn: sqlite3.Connection, key: Key) -> str | None:
    row = conn.execute("SELECT body FROM resources WHERE kind = ? AND namespace = ? AND name = ?", key).fetchone()
    return None if row is None else str(row[0])


def bodies(conn: sqlite3.Connection, kinds: Sequence[str] | None, namespace: str | None = None) -> list[str]:
    """Bodies of the objects of `kinds` (None: all), ordered by kind, namespace, name."""
    where, args = [], []
    if kinds is not None:
        where.append(f"kind IN ({','.join('?' * len(kinds))})")
        args.extend(kinds)
    if namespace is not None:
        where.append("namespace = ?")
        args.append(namespace)
    sql = "SELECT body FROM resources" + (" WHERE " + " AND ".join(where) if where else "")
    return [r[0] for r in conn.execute(sql + " ORDER BY kind, namespace, name", args)]


def namespace_members(conn: sqlite3.Connection, namespace: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT body FROM resources WHERE namespace = ? AND kind != 'Namespace' "
                                       "ORDER BY kind, name", (namespace,))]


def put(conn: sqlite3.Connection, key: Key, rv: int, body_: str, change: str) -> None:
    """Store the object and log the change."""
    conn.execute("INSERT OR REPLACE INTO resources (kind, namespace, name, rv, body) VALUES (?, ?, ?, ?, ?)",
                 (*key, rv, body_))
    log(conn, key, rv, body_, change)


def remove(conn: sqlite3.Connection, key: Key, rv: int, last_body: str) -> None:
    conn.execute("DELETE FROM resources WHERE kind = ? AND namespace = ? AND name = ?", key)
    log(conn, key, rv, last_body, "DELETED")


def log(conn: sqlite3.Connection, key: Key, rv: int, body_: str, change: str) -> None:
    conn.execute("INSERT INTO changes (rv, type, kind, namespace, name, body) VALUES (?, ?, ?, ?, ?, ?)",
                 (rv, change, *key, body_))


def changes(conn: sqlite3.Connection, since: int, kinds: Sequence[str] | None,
            limit: int) -> list[tuple[int, str, str]]:
    """(rv, type, body) of logged changes after `since`, oldest first."""
    if kinds is None:
        return conn.execute("SELECT rv, type, body FROM changes WHERE rv > ? ORDER BY rv LIMIT ?",
                            (since, limit)).fetchall()
    marks = ",".join("?" * len(kinds))
    return conn.execute(f"SELECT rv, type, body FROM changes WHERE rv > ? AND kind IN ({marks}) "
                        "ORDER BY rv LIMIT ?", (since, *kinds, limit)).fetchall()


def compact(conn: sqlite3.Connection, upto: int) -> None:
    conn.execute("DELETE FROM changes WHERE rv <= ?", (upto,))
    conn.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'compacted'", (upto,))
