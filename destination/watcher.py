"""Watcher -> publisher -> listener: endpoints of each subscribed target, snapshot then diffs.

`EndpointsWatcher.run(store)` lists Services and Pods, then follows the store's
watch; on any watch error (including `Gone`) it relists with backoff, and the
publishers send only what changed. Listeners are synchronous and must not
block: they only enqueue (see server.py).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from .address import AddressSet
from .index import KINDS, POD, SERVICE, EndpointIndex
from .targets import Target


class Listener(Protocol):
    def add(self, addresses: AddressSet) -> None: ...
    def remove(self, addresses: AddressSet) -> None: ...
    def no_endpoints(self, exists: bool) -> None: ...


# === updates: what a publisher tells its listeners ===

@dataclass(frozen=True)
class Add:
    addresses: AddressSet


@dataclass(frozen=True)
class Remove:
    addresses: AddressSet


@dataclass(frozen=True)
class NoEndpoints:
    exists: bool


Update = Add | Remove | NoEndpoints
State = AddressSet | None
"""Endpoints of a target; None = not a mesh service (the target does not exist)."""


def snapshot(state: State) -> Update:
    if state is None:
        return NoEndpoints(exists=False)
    if not state:
        return NoEndpoints(exists=True)
    return Add(state)


def transition(old: State, new: State) -> list[Update]:
    """The updates that take a listener from `old` to `new` (pure)."""
    old_set, new_set = old or AddressSet(), new or AddressSet()
    added, removed = old_set.diff(new_set)
    updates: list[Update] = []
    if removed:
        updates.append(Remove(removed))
    if added:
        updates.append(Add(added))
    if not new_set and (bool(old_set) or (old is None) != (new is None)):
        updates.append(NoEndpoints(exists=new is not None))
    return updates


def deliver(listener: Listener, update: Update) -> None:
    if isinstance(update, Add):
        listener.add(update.addresses)
    elif isinstance(update, Remove):
        listener.remove(update.addresses)
    else:
        listener.no_endpoints(update.exists)


class _Publisher:
    """One target's current state and its listeners."""

    def __init__(self, target: Target, state: State) -> None:
        self.target = target
        self.state = state
        self.listeners: list[Listener] = []

    def __repr__(self) -> str:
        n = "missing" if self.state is None else len(self.state)
        return f"<Publisher {self.target} endpoints={n} listeners={len(self.listeners)}>"


class EndpointsWatcher:
    def __init__(self, *, trust_domain: str, log: structlog.stdlib.BoundLogger) -> None:
        self.index = EndpointIndex(trust_domain)
        self._publishers: dict[Target, _Publisher] = {}
        self._log = log.bind(component="endpoints-watcher")
        self._synced = asyncio.Event()
        self._publish_scheduled = False

    @property
    def ready(self) -> bool:
        """True once the initial list has been loaded."""
        return self._synced.is_set()

    async def wait_ready(self) -> None:
        await self._synced.wait()

    def __repr__(self) -> str:
        return f"<EndpointsWatcher ready={self.ready} publishers={len(self._publishers)} {self.index!r}>"

    # === subscriptions ===

    def subscribe(self, target: Target, listener: Listener) -> None:
        """Send `listener` the current snapshot of `target` at once, then diffs."""
        publisher = self._publishers.get(target)
        if publisher is None:
            publisher = self._publishers[target] = _Publisher(target, self.index.resolve(target))
        publisher.listeners.append(listener)
        self._deliver(listener, snapshot(publisher.state))

    def unsubscribe(self, target: Target, listener: Listener) -> None:
        publisher = self._publishers.get(target)
        if publisher is None:
            return
        try:
            publisher.listeners.remove(listener)
        except ValueError:
            pass
        if not publisher.listeners:
            del self._publishers[target]

    # === changes ===

    def load(self, services: list[Any], pods: list[Any]) -> None:
        """Replace everything (initial list or relist) and publish the differences."""
        self.index.replace(services, pods)
        self.publish()

    def apply(self, event_type: str, resource: Any) -> None:
        """Record one change; call `publish()` (or let `run` schedule it) to tell listeners."""
        if event_type == "DELETED":
            self.index.delete(resource)
        else:
            self.index.upsert(resource)

    def _schedule_publish(self) -> None:
        # The store hands over a batch of events without yielding to the loop:
        # publishing once after the batch sends listeners the net change only.
        if not self._publish_scheduled:
            self._publish_scheduled = True
            asyncio.get_running_loop().call_soon(self.publish)

    def publish(self) -> None:
        """Send every listener what changed since the last publish."""
        self._publish_scheduled = False
        self._republish()

    def _republish(self) -> None:
        for publisher in list(self._publishers.values()):
            new = self.index.resolve(publisher.target)
            updates = transition(publisher.state, new)
            publisher.state = new
            for update in updates:
                for listener in list(publisher.listeners):
                    self._deliver(listener, update)

    def _deliver(self, listener: Listener, update: Update) -> None:
        try:
            deliver(listener, update)
        except Exception as e:  # noqa: BLE001 - one bad listener must not stop the others
            self._log.error("listener.failed", listener=repr(listener), error=repr(e))

    # === the store loop ===

    async def run(
        self,
        store: Any,
        *,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        """List, then watch; relist with exponential backoff on any watch error. Runs until cancelled."""
        delay = backoff
        while True:
            try:
                listed = await self._relist(store)
                delay = backoff
                async for event in store.watch(set(KINDS), since=min(listed.values())):
                    kind = event.resource.kind
                    # Watching from the older list's version replays changes the
                    # newer list already holds: skip those.
                    if kind in listed and event.resource_version > listed[kind]:
                        self.apply(event.type, event.resource)
                        self._schedule_publish()
                self._log.warning("watch.ended")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - includes the store's Gone: relist
                self._log.warning("watch.failed", error=repr(e), retry_in=delay)
                await sleep(delay)
                delay = min(delay * 2, max_backoff)

    async def _relist(self, store: Any) -> dict[str, int]:
        services, rv_services = await store.list(SERVICE)
        pods, rv_pods = await store.list(POD)
        self.load(list(services), list(pods))
        if not self.ready:
            self._log.info("watcher.ready", services=len(services), pods=len(pods))
        self._synced.set()
        return {SERVICE: rv_services, POD: rv_pods}
