"""One kind's list-then-watch loop (client-go's reflector, small): resume, relist on Gone, backoff.

A `Reflector` keeps the objects of its kind it has reported (its cache), so that
after a 410 Gone (the server no longer has the history to resume from) it can
list again and report only the differences (`diff`): consumers converge
without seeing the whole state again. A dropped or timed-out watch resumes
from the last resourceVersion seen (events and bookmarks). A kind the server
does not serve (its CRD not installed) counts as empty and is looked for
again every `missing_kind_retry` seconds.

Errors before the first successful list (and a Gone for the caller's own
`since`) go to the caller; later ones are logged and retried with backoff, and
after RELIST_AFTER_FAILURES failed watches in a row the kind is listed again
(the resume point itself may be what the server cannot serve).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from meshlet.controller.model import Resource
from meshlet.controller.store.base import EventType, WatchEvent
from meshlet.controller.store.errors import Gone, StoreError
from meshlet.controller.store.kube.resources import KubeResource

RELIST_AFTER_FAILURES = 3
"""Watch attempts failing in a row (other than Gone) before the reflector lists again."""

Key = tuple[str, str]
"""(namespace, name) of an object of one kind."""


class KindNotServed(StoreError):
    """The API server does not serve this kind (404 on its collection: CRD not installed)."""


@dataclass(frozen=True)
class RawEvent:
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK."""
    resource: Resource | None
    """None for a BOOKMARK."""
    resource_version: int


class Source(Protocol):
    """What a reflector reads (the KubeStore; a fake in unit tests)."""

    async def list_kind(self, res: KubeResource) -> tuple[list[Resource], int]:
        """Every object of the kind (untranslatable ones skipped) and the list's resourceVersion.
        Raises KindNotServed, or StoreError."""
        ...

    def watch_kind(self, res: KubeResource, since: int) -> AsyncIterator[RawEvent]:
        """Changes after `since` until the server ends the watch; Gone (410), KindNotServed, StoreError."""
        ...


def key_of(resource: Resource) -> Key:
    return (resource.metadata.namespace or "", resource.metadata.name)


def diff(old: Mapping[Key, Resource], new: Mapping[Key, Resource], rv: int) -> list[WatchEvent]:
    """The events that take a consumer from `old` to `new` (a relist at version `rv`), sorted by key."""
    events: list[WatchEvent] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if after is None and before is not None:
            events.append(WatchEvent(EventType.DELETED, before, rv))
        elif before is None and after is not None:
            events.append(WatchEvent(EventType.ADDED, after, rv))
        elif before is not None and after is not None and (
                before.metadata.resource_version != after.metadata.resource_version
                or before.metadata.uid != after.metadata.uid):
            events.append(WatchEvent(EventType.MODIFIED, after, rv))
    return events


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.2
    maximum: float = 10.0
    missing_kind_retry: float = 30.0


class Reflector:
    def __init__(self, source: Source, res: KubeResource, emit: Callable[[WatchEvent], Awaitable[None]],
                 log: Any, backoff: Backoff = Backoff(),
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.source = source
        self.res = res
        self.emit = emit
        self.log = log.bind(kind=res.kind)
        self.backoff = backoff
        self.sleep = sleep
        self.cache: dict[Key, Resource] = {}
        self.rv = 0
        self.served = True
        self.resumes = 0
        """Watches restarted from the last version seen (server timeout, dropped connection)."""
        self.relists = 0
        """Lists after the first (Gone, kind appeared or vanished)."""

    async def run(self, since: int | None) -> None:
        """Report the kind's objects (as ADDED unless `since`), then its changes, until cancelled."""
        await self._initial(since)
        checked = since is None  # a caller's `since` is checked by the first watch
        delay = self.backoff.initial
        gone_delay = 0.0  # the first Gone relists at once; Gone after Gone (a broken server) backs off
        failures = 0  # watch attempts failing in a row; after RELIST_AFTER_FAILURES, list again
        while True:
            if not self.served:
                await self.sleep(self.backoff.missing_kind_retry)
                await self._relist_quietly()
                continue
            try:
                got = False
                events = self.source.watch_kind(self.res, self.rv)
                async with contextlib.aclosing(events):
                    async for event in events:
                        checked = got = True
                        delay, failures = self.backoff.initial, 0
                        await self._handle(event)
                checked = True
                self.resumes += 1
                gone_delay, failures = 0.0, 0
                if not got:  # an idle watch the server ended: never spin on a server that ends them at once
                    await self.sleep(self.backoff.initial)
            except asyncio.CancelledError:
                raise
            except Gone:
                if not checked:
                    raise
                self.log.info("watch.gone", resource_version=self.rv, relist_in=gone_delay)
                if gone_delay:
                    await self.sleep(gone_delay)
                gone_delay = min(max(gone_delay * 2, self.backoff.initial), self.backoff.maximum)
                await self._relist_quietly()
            except KindNotServed:
                await self._vanished()
            except StoreError as e:
                failures += 1
                self.log.warning("watch.failed", error=str(e), retry_in=delay, failures=failures)
                await self.sleep(delay)
                delay = min(delay * 2, self.backoff.maximum)
                if failures >= RELIST_AFTER_FAILURES and checked:
                    # the resume point itself may be what fails (e.g. etcd compacted just past it):
                    # start again from a fresh list, as client-go's reflector does
                    failures = 0
                    await self._relist_quietly()
                else:
                    self.resumes += 1

    async def _initial(self, since: int | None) -> None:
        try:
            items, rv = await self.source.list_kind(self.res)
        except KindNotServed:
            self.log.warning("kind.not_served", resource=self.res.display)
            self.served, items, rv = False, [], since or 0
        self.cache = {key_of(r): r for r in items}
        if since is None:
            self.rv = rv
            for resource in items:
                await self.emit(WatchEvent(EventType.ADDED, resource, rv))
        else:
            # watching from `since` replays what happened after it onto this newer list: the cache
            # ends up exact once the replay passes the list's version
            self.rv = since

    async def _handle(self, event: RawEvent) -> None:
        self.rv = max(self.rv, event.resource_version)
        if event.type == "BOOKMARK" or event.resource is None:
            return
        key = key_of(event.resource)
        if event.type == "DELETED":
            self.cache.pop(key, None)
        else:
            self.cache[key] = event.resource
        await self.emit(WatchEvent(EventType(event.type), event.resource, event.resource_version))

    async def _relist_quietly(self) -> None:
        """List again (retrying with backoff) and report the differences."""
        delay = self.backoff.initial
        while True:
            try:
                items, rv = await self.source.list_kind(self.res)
                break
            except asyncio.CancelledError:
                raise
            except KindNotServed:
                if self.served:
                    await self._vanished()
                return
            except StoreError as e:
                self.log.warning("list.failed", error=str(e), retry_in=delay)
                await self.sleep(delay)
                delay = min(delay * 2, self.backoff.maximum)
        if not self.served:
            self.log.info("kind.served", resource=self.res.display)
        self.served = True
        self.relists += 1
        new = {key_of(r): r for r in items}
        for event in diff(self.cache, new, rv):
            await self.emit(event)
        self.cache, self.rv = new, rv

    async def _vanished(self) -> None:
        """The kind is not (or no longer) served: its objects are gone."""
        if self.served:
            self.log.warning("kind.not_served", resource=self.res.display)
        self.served = False
        for event in diff(self.cache, {}, self.rv):
            await self.emit(event)
        self.cache = {}
