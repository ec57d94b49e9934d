"""Watcher -> publisher -> listener: endpoints of each subscribed target, snapshot then diffs.

`EndpointsWatcher.run(store)` lists Services, Pods, EndpointSlices (Kubernetes
mode; when the store knows the kind) and the traffic resources (ServiceEntry,
Sidecar, MeshConfig, VirtualService, ... : `rules.RULE_KINDS`, those the store
knows), then follows the store's watch; on any watch error
(including `Gone`) it relists with backoff, and the publishers send only what
changed. Listeners are synchronous and must not block: they only enqueue
(see server.py). Publishers are per (target, caller): a ServiceEntry, the
caller's Sidecar scope and the outbound traffic policy decide what a target
is for that caller (`lookup.py`). Other views of the same data (profiles)
hook into `on_publish`.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from .address import AddressSet
from .dns import DnsCache
from .hosts import DEFAULT_DOMAIN
from .index import ENDPOINT_SLICE, POD, SERVICE, EndpointIndex
from .lookup import CallerRef, blocked, entry_endpoints, identify
from .rules import RULE_KINDS, SERVICE_ENTRY, RuleIndex
from .targets import Target

ALL_KINDS = frozenset({SERVICE, POD, ENDPOINT_SLICE, *RULE_KINDS})
ANYONE = CallerRef()
"""A caller without context (namespace "", no pod, no labels)."""
from .values import attr, items


class Listener(Protocol):
    def add(self, addresses: AddressSet) -> None: ...
    def remove(self, addresses: AddressSet) -> None: ...
    def no_endpoints(self, exists: bool, blocked: bool = False) -> None: ...


class Blocked:
    """State of a target the caller may not reach (REGISTRY_ONLY and not in its registry)."""

    def __repr__(self) -> str:
        return "BLOCKED"


BLOCKED = Blocked()


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
    blocked: bool = False


Update = Add | Remove | NoEndpoints
State = AddressSet | None | Blocked
"""Endpoints of a target; None = not a mesh service (pass through); BLOCKED = not reachable for the caller."""


def _kind(state: State) -> int:
    return 0 if isinstance(state, AddressSet) else 1 if state is None else 2


def snapshot(state: State) -> Update:
    if not isinstance(state, AddressSet):
        return NoEndpoints(exists=False, blocked=state is BLOCKED)
    if not state:
        return NoEndpoints(exists=True)
    return Add(state)


def transition(old: State, new: State) -> list[Update]:
    """The updates that take a listener from `old` to `new` (pure)."""
    old_set = old if isinstance(old, AddressSet) else AddressSet()
    new_set = new if isinstance(new, AddressSet) else AddressSet()
    added, removed = old_set.diff(new_set)
    updates: list[Update] = []
    if removed:
        updates.append(Remove(removed))
    if added:
        updates.append(Add(added))
    if not new_set and (bool(old_set) or _kind(old) != _kind(new)):
        updates.append(NoEndpoints(exists=isinstance(new, AddressSet), blocked=new is BLOCKED))
    return updates


def deliver(listener: Listener, update: Update) -> None:
    if isinstance(update, Add):
        listener.add(update.addresses)
    elif isinstance(update, Remove):
        listener.remove(update.addresses)
    elif update.blocked:
        listener.no_endpoints(update.exists, blocked=True)
    else:
        listener.no_endpoints(update.exists)


class _Publisher:
    """One target's current state and its listeners."""

    def __init__(self, target: Target, caller: CallerRef, state: State) -> None:
        self.target = target
        self.caller = caller
        self.state = state
        self.listeners: list[Listener] = []

    def __repr__(self) -> str:
        n = len(self.state) if isinstance(self.state, AddressSet) else repr(self.state)
        return f"<Publisher {self.target} endpoints={n} listeners={len(self.listeners)}>"


class EndpointsWatcher:
    def __init__(self, *, trust_domain: str, log: structlog.stdlib.BoundLogger,
                 cluster_domain: str = DEFAULT_DOMAIN, dns: DnsCache | None = None) -> None:
        self.index = EndpointIndex(trust_domain)
        self.rules = RuleIndex(cluster_domain)
        self._publishers: dict[tuple[Target, CallerRef], _Publisher] = {}
        self._log = log.bind(component="endpoints-watcher")
        self._synced = asyncio.Event()
        self._publish_scheduled = False
        self.dns = dns or DnsCache(on_change=self._schedule_publish, log=log)
        self.on_publish: list[Callable[[frozenset[str]], None]] = []
        """Called after every publish with the kinds changed since the last one (None: everything)."""
        self._changed: set[str] = set(ALL_KINDS)

    @property
    def ready(self) -> bool:
        """True once the initial list has been loaded."""
        return self._synced.is_set()

    async def wait_ready(self) -> None:
        await self._synced.wait()

    def __repr__(self) -> str:
        return f"<EndpointsWatcher ready={self.ready} publishers={len(self._publishers)} {self.index!r}>"

    # === subscriptions ===

    def resolve(self, target: Target, caller: CallerRef = ANYONE) -> State:
        """Endpoints of `target` as `caller` sees it (pure over the indexes and the DNS cache)."""
        found = identify(target, caller, self.index, self.rules, self.dns.lookup)
        if found.kind in ("service", "pod"):
            return self.index.resolve(target)
        if found.kind == "entry":
            return entry_endpoints(found, self.dns.lookup, self.index)
        return BLOCKED if blocked(caller, found.labels, self.rules) else None

    def subscribe(self, target: Target, listener: Listener, caller: CallerRef = ANYONE) -> None:
        """Send `listener` the current snapshot of `target` at once, then diffs."""
        key = (target, caller)
        publisher = self._publishers.get(key)
        if publisher is None:
            publisher = self._publishers[key] = _Publisher(target, caller, self.resolve(target, caller))
        publisher.listeners.append(listener)
        self._deliver(listener, snapshot(publisher.state))

    def unsubscribe(self, target: Target, listener: Listener, caller: CallerRef = ANYONE) -> None:
        key = (target, caller)
        publisher = self._publishers.get(key)
        if publisher is None:
            return
        try:
            publisher.listeners.remove(listener)
        except ValueError:
            pass
        if not publisher.listeners:
            del self._publishers[key]

    # === changes ===

    def load(self, services: list[Any], pods: list[Any], rules: dict[str, list[Any]] | None = None,
             slices: list[Any] | None = None) -> None:
        """Replace everything (initial list or relist) and publish the differences."""
        self.index.replace(services, pods, slices or ())
        for kind in RULE_KINDS:
            self.rules.replace(kind, (rules or {}).get(kind, ()))
        self._changed.update(ALL_KINDS)
        self.publish()

    def apply(self, event_type: str, resource: Any) -> None:
        """Record one change; call `publish()` (or let `run` schedule it) to tell listeners."""
        self._changed.add(resource.kind)
        target: Any = self.rules if resource.kind in RULE_KINDS else self.index
        if event_type == "DELETED":
            target.delete(resource)
        else:
            target.upsert(resource)

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
        self._want_dns()
        for publisher in list(self._publishers.values()):
            new = self.resolve(publisher.target, publisher.caller)
            updates = transition(publisher.state, new)
            publisher.state = new
            for update in updates:
                for listener in list(publisher.listeners):
                    self._deliver(listener, update)
        changed, self._changed = frozenset(self._changed), set()
        for hook in list(self.on_publish):
            try:
                hook(changed)
            except Exception as e:  # noqa: BLE001 - a broken view must not stop endpoint updates
                self._log.error("publish_hook.failed", hook=repr(hook), error=repr(e))

    def _want_dns(self) -> None:
        """Keep every DNS ServiceEntry name resolved, so connections by IP find their entry."""
        for se in self.rules.all(SERVICE_ENTRY):
            if not str(attr(se.spec, "resolution", default="")).upper().startswith("DNS"):
                continue
            names = [attr(e, "address") for e in items(se.spec, "endpoints")] or list(items(se.spec, "hosts"))
            for name in names:
                if name and not str(name).startswith("*"):
                    self.dns.lookup(str(name))

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
        dns = asyncio.create_task(self.dns.run(), name="dns-cache")
        try:
            await self._follow(store, backoff, max_backoff, sleep)
        finally:
            dns.cancel()
            await asyncio.gather(dns, return_exceptions=True)

    async def _follow(self, store: Any, backoff: float, max_backoff: float, sleep: Callable[[float], Any]) -> None:
        delay = backoff
        while True:
            try:
                listed = await self._relist(store)
                delay = backoff
                async for event in store.watch(set(listed), since=min(listed.values())):
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
        versions = {SERVICE: rv_services, POD: rv_pods}
        slices: list[Any] = []
        if ENDPOINT_SLICE in known_kinds(store):
            listed_slices, versions[ENDPOINT_SLICE] = await store.list(ENDPOINT_SLICE)
            slices = list(listed_slices)
        rules: dict[str, list[Any]] = {}
        for kind in rule_kinds(store):
            listed, versions[kind] = await store.list(kind)
            rules[kind] = list(listed)
        self.load(list(services), list(pods), rules, slices)
        if not self.ready:
            self._log.info("watcher.ready", services=len(services), pods=len(pods), endpoint_slices=len(slices),
                           rules={k: len(v) for k, v in rules.items() if v})
        self._synced.set()
        return versions


def known_kinds(store: Any) -> set[str]:
    """The kinds this store knows (a store without a registry: none)."""
    registry = getattr(store, "registry", None)
    return set(registry.kinds()) if registry is not None else set()


def rule_kinds(store: Any) -> list[str]:
    """The traffic kinds this store knows."""
    known = known_kinds(store)
    return [kind for kind in RULE_KINDS if kind in known]
