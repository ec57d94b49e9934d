"""Resolution of ServiceEntry `resolution: DNS` names, in a thread, cached and refreshed.

`lookup(name)` is synchronous and never blocks: it answers from the cache
(None while the first answer is pending) and registers the name as wanted.
`run()` resolves wanted names with getaddrinfo in a worker thread (one at a
time, each with a timeout), refreshes them every `refresh` seconds, forgets
names nobody asked for during a refresh round, and calls `on_change` when
an answer differs from the cached one (the watcher then republishes). A
name that does not resolve is cached as no addresses.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

import structlog

MAX_NAMES = 1000
Resolver = Callable[[str], tuple[str, ...]]


def getaddrinfo_ips(name: str) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        return ()
    return tuple(sorted({str(info[4][0]) for info in infos}))


class DnsCache:
    def __init__(self, *, on_change: Callable[[], None], log: structlog.stdlib.BoundLogger,
                 refresh: float = 30.0, timeout: float = 5.0, resolver: Resolver = getaddrinfo_ips) -> None:
        self._answers: dict[str, tuple[str, ...]] = {}
        self._resolved_at: dict[str, float] = {}
        self._wanted: set[str] = set()
        self._used: set[str] = set()
        self._wake = asyncio.Event()
        self._on_change = on_change
        self._log = log.bind(component="dns")
        self._refresh, self._timeout, self._resolver = refresh, timeout, resolver

    def __repr__(self) -> str:
        return f"<DnsCache names={len(self._answers)} wanted={len(self._wanted)}>"

    def lookup(self, name: str) -> tuple[str, ...] | None:
        name = name.lower().rstrip(".")
        self._used.add(name)
        if name not in self._answers and name not in self._wanted:
            if len(self._wanted) >= MAX_NAMES:
                self._log.warning("dns.too_many_names", name=name, limit=MAX_NAMES)
                return ()
            self._wanted.add(name)
            self._wake.set()
        return self._answers.get(name)

    def addresses(self) -> dict[str, tuple[str, ...]]:
        """Every cached answer (name -> IPs)."""
        return dict(self._answers)

    async def run(self) -> None:
        """Resolve and refresh until cancelled."""
        while True:
            self._wake.clear()  # before resolving: a name asked for meanwhile wakes the wait below
            now = time.monotonic()
            due = [n for n in self._wanted if now - self._resolved_at.get(n, -1e18) >= self._refresh]
            changed = False
            for name in sorted(due):
                ips = await self._resolve(name)
                self._resolved_at[name] = time.monotonic()
                if self._answers.get(name) != ips:
                    self._answers[name] = ips
                    changed = True
                    self._log.info("dns.resolved", name=name, addresses=list(ips))
            if changed:
                self._on_change()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._refresh)
            if not self._wake.is_set():  # a refresh round: keep only what was used since the last one
                for name in self._wanted - self._used:
                    self._wanted.discard(name)
                    self._answers.pop(name, None)
                    self._resolved_at.pop(name, None)
                self._used = set()

    async def _resolve(self, name: str) -> tuple[str, ...]:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._resolver, name), self._timeout)
        except TimeoutError:
            self._log.warning("dns.timeout", name=name, timeout=self._timeout)
            return ()
