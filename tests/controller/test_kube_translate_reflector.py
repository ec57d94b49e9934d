"""The Kubernetes store's per-kind watch loop against a scripted source (no sockets):
resume from the last version after a dropped watch, relist-and-diff after 410 Gone,
a caller's too-old `since`, kinds the server does not serve yet. The same paths run
against a real API server in tests/kube/test_store_watch.py."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from meshlet.controller.model import DEFAULT_REGISTRY, ObjectMeta, Service
from meshlet.controller.store import EventType, Gone, StoreError, WatchEvent
from meshlet.controller.store.kube import KindNotServed, KubeResource, Reflector, diff
from meshlet.controller.store.kube.reflector import Backoff, RawEvent

RES = KubeResource(DEFAULT_REGISTRY.for_kind("Service"))


def svc(name: str, rv: int, uid: str = "u") -> Service:
    return Service(metadata=ObjectMeta(name=name, namespace="shop", resource_version=rv, uid=f"{uid}-{name}"))


class Script:
    """A Source whose lists and watches return what the test queued, in order."""

    def __init__(self) -> None:
        self.lists: list[Any] = []
        self.watches: list[list[Any]] = []
        self.watch_calls: list[int] = []

    async def list_kind(self, res: KubeResource) -> tuple[list[Service], int]:
        if not self.lists:
            await asyncio.Event().wait()  # nothing more to list: hang like a slow server
        item = self.lists.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    async def watch_kind(self, res: KubeResource, since: int) -> AsyncIterator[RawEvent]:
        self.watch_calls.append(since)
        if not self.watches:
            await asyncio.Event().wait()  # an idle watch, forever
        for item in self.watches.pop(0):
            if isinstance(item, BaseException):
                raise item
            yield item


async def nosleep(_: float) -> None:
    await asyncio.sleep(0)


async def run_until(script: Script, since: int | None, count: int) -> tuple[list[WatchEvent], Reflector]:
    events: list[WatchEvent] = []
    done = asyncio.Event()

    async def emit(ev: WatchEvent) -> None:
        events.append(ev)
        if len(events) >= count:
            done.set()

    reflector = Reflector(script, RES, emit, structlog.get_logger(), Backoff(0.01, 0.02, 0.01), sleep=nosleep)
    task = asyncio.create_task(reflector.run(since))
    waiter = asyncio.create_task(done.wait())
    await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return events, reflector


def brief(events: list[WatchEvent]) -> list[tuple[str, str, int]]:
    return [(e.type.value, e.resource.metadata.name, e.resource_version) for e in events]


async def test_snapshot_then_changes_then_resume_after_a_dropped_watch_then_relist_after_gone() -> None:
    s = Script()
    s.lists = [([svc("a", 3), svc("b", 4)], 10),
               ([svc("b", 21), svc("c", 22)], 30)]      # the relist after Gone
    s.watches = [[RawEvent("ADDED", svc("x", 11), 11), RawEvent("BOOKMARK", None, 12),
                  StoreError("connection reset")],       # dropped: resume from 12
                 [RawEvent("DELETED", svc("x", 13), 13), Gone("too old")]]
    events, reflector = await run_until(s, None, 7)
    assert brief(events) == [
        ("ADDED", "a", 10), ("ADDED", "b", 10),
        ("ADDED", "x", 11), ("DELETED", "x", 13),
        # the relist's differences only: a deleted, b modified, c added
        ("DELETED", "a", 30), ("MODIFIED", "b", 30), ("ADDED", "c", 30)]
    assert s.watch_calls[:3] == [10, 12, 30]
    assert reflector.relists == 1 and reflector.resumes >= 1
    assert sorted(reflector.cache) == [("shop", "b"), ("shop", "c")]


async def test_a_callers_since_too_old_raises_gone() -> None:
    s = Script()
    s.lists = [([svc("a", 3)], 10)]
    s.watches = [[Gone("too old resource version: 5 (100)")]]
    reflector = Reflector(s, RES, _noemit, structlog.get_logger(), Backoff(0.01, 0.02, 0.01), sleep=nosleep)
    with pytest.raises(Gone):
        await asyncio.wait_for(reflector.run(5), 30)
    assert s.watch_calls == [5]


async def test_since_replays_onto_the_seeding_list_then_gone_diffs_against_the_replayed_state() -> None:
    s = Script()
    s.lists = [([svc("a", 8), svc("b", 9)], 10),          # seed (not reported)
               ([svc("a", 8)], 20)]                       # relist after a later Gone
    s.watches = [[RawEvent("MODIFIED", svc("a", 8), 8), RawEvent("ADDED", svc("b", 9), 9), Gone("compacted")]]
    events, _ = await run_until(s, 7, 3)
    assert brief(events) == [("MODIFIED", "a", 8), ("ADDED", "b", 9), ("DELETED", "b", 20)]


async def test_a_kind_not_served_is_empty_until_it_appears() -> None:
    s = Script()
    s.lists = [KindNotServed("no CRD"), ([svc("a", 40)], 41)]
    events, reflector = await run_until(s, None, 1)
    assert brief(events) == [("ADDED", "a", 41)]
    assert reflector.served
    assert s.watch_calls[0] == 41


async def test_a_kind_that_vanishes_reports_its_objects_deleted() -> None:
    s = Script()
    s.lists = [([svc("a", 3)], 10), KindNotServed("CRD deleted")]
    s.watches = [[KindNotServed("CRD deleted")]]
    events, reflector = await run_until(s, None, 2)
    assert brief(events) == [("ADDED", "a", 10), ("DELETED", "a", 10)]


async def test_errors_before_the_first_list_reach_the_caller() -> None:
    s = Script()
    s.lists = [StoreError("forbidden")]
    reflector = Reflector(s, RES, _noemit, structlog.get_logger(), sleep=nosleep)
    with pytest.raises(StoreError, match="forbidden"):
        await reflector.run(None)


def test_diff_reports_only_changes() -> None:
    old = {("shop", "a"): svc("a", 1), ("shop", "b"): svc("b", 2), ("shop", "c"): svc("c", 3)}
    new = {("shop", "a"): svc("a", 1), ("shop", "b"): svc("b", 5), ("shop", "c"): svc("c", 3, uid="new"),
           ("shop", "d"): svc("d", 6)}
    assert [(e.type, e.resource.metadata.name) for e in diff(old, new, 9)] == [
        (EventType.MODIFIED, "b"), (EventType.MODIFIED, "c"), (EventType.ADDED, "d")]
    assert [(e.type, e.resource_version) for e in diff(new, {}, 9)] == [(EventType.DELETED, 9)] * 4


async def _noemit(_: WatchEvent) -> None:
    return None


async def test_gone_after_gone_backs_off() -> None:
    """A server that answers every resume with 410 is relisted with growing pauses, not in a tight loop."""
    s = Script()
    s.lists = [([svc("a", 3)], 10)] + [([svc("a", 3)], 10 + i) for i in range(1, 6)]
    s.watches = [[RawEvent("MODIFIED", svc("a", 3), 10 + i), Gone("again")] for i in range(6)]
    pauses: list[float] = []

    async def record(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.sleep(0)

    events: list[WatchEvent] = []

    async def emit(ev: WatchEvent) -> None:
        events.append(ev)

    reflector = Reflector(s, RES, emit, structlog.get_logger(), Backoff(0.1, 0.4, 1.0), sleep=record)
    task = asyncio.create_task(reflector.run(None))
    for _ in range(200):
        if reflector.relists >= 5:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert reflector.relists >= 5
    assert pauses[:4] == [0.1, 0.2, 0.4, 0.4]


async def test_watches_failing_in_a_row_lead_to_a_relist() -> None:
    """A resume point the server keeps failing on (not with 410: e.g. a 500 from etcd) is abandoned for a fresh list."""
    s = Script()
    s.lists = [([svc("a", 3)], 10), ([svc("b", 14)], 15)]
    s.watches = [[StoreError("500 InternalError")]] * 3
    events, reflector = await run_until(s, None, 3)
    assert brief(events) == [("ADDED", "a", 10), ("DELETED", "a", 15), ("ADDED", "b", 15)]
    assert s.watch_calls[:4] == [10, 10, 10, 15]
    assert reflector.relists == 1
