"""How an idle watch waits cheaply: a timer or its store's own writes wake it (`Wakeup`), and a
`PRAGMA data_version` probe (`Probe`) tells whether another connection committed meanwhile."""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path


class Wakeup:
    """A watch's alarm: set by the poll timer, or (`woken`) by its store's own writes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()
        self.woken = False

    def wake(self) -> None:
        self.woken = True
        self.event.set()


class Probe:
    """Tells cheaply whether any connection committed since `mark()`: `PRAGMA data_version` on a
    read-only connection of the watch's own, run on the event loop (microseconds, never waits for a
    writer in WAL mode), so an idle watch costs no trip to the store's thread per poll.
    Any problem with it just means "maybe changed": the watch then queries as usual."""

    def __init__(self, path: Path) -> None:
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
        except (sqlite3.Error, OSError):
            self._conn = None
        self._version: int | None = None

    def _read(self) -> int | None:
        if self._conn is None:
            return None
        try:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return None

    def mark(self) -> None:
        self._version = self._read()

    def changed(self) -> bool:
        version = self._read()
        return version is None or version != self._version

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
