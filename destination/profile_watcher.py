"""GetProfile subscriptions: the current `DestinationProfile` of a (target, caller), recomputed on every change.

The profile watcher shares the endpoints watcher's indexes and store loop:
it hooks into `EndpointsWatcher.on_publish`, so a change of any watched kind
(Service, Pod, VirtualService, DestinationRule, ServiceEntry, HTTPRoute,
Sidecar, MeshConfig) recomputes every subscribed profile once per batch and
sends it only when it differs from the last one sent (a batch of Pod changes
only recomputes profiles that depend on pods: by pod IP, or for a caller
whose labels come from its pod). Translation is pure
(`profiles.build`); resources it has to skip are logged once per version.

`LatestProfile` is the listener of one stream: a queue of one where a new
profile replaces the one not yet sent (only the latest matters), so a slow
client costs one message of memory at most.
"""
from __future__ import annotations

import asyncio

import structlog
from meshlet.api import destination_pb as pb

from .index import POD
from .lookup import CallerRef
from .profiles import build
from .targets import IpTarget, Target
from .watcher import EndpointsWatcher

MAX_LOGGED_PROBLEMS = 1000


class LatestProfile:
    """Listener of one GetProfile stream: keeps only the newest unsent profile."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[pb.DestinationProfile] = asyncio.Queue(maxsize=1)

    def __repr__(self) -> str:
        return f"<LatestProfile pending={self.queue.qsize()}>"

    def profile(self, profile: pb.DestinationProfile) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(profile)


class _Subscription:
    def __init__(self, target: Target, caller: CallerRef, listener: LatestProfile, path: str) -> None:
        self.target, self.caller, self.listener, self.path = target, caller, listener, path
        self.last: bytes | None = None
        self.depends_on_pods = isinstance(target, IpTarget) or (bool(caller.pod) and not caller.labels)

    def __repr__(self) -> str:
        return f"<ProfileSubscription {self.target} caller={self.caller.namespace}/{self.caller.pod}>"


class ProfileWatcher:
    def __init__(self, watcher: EndpointsWatcher, log: structlog.stdlib.BoundLogger) -> None:
        self._watcher = watcher
        self._subs: list[_Subscription] = []
        self._log = log.bind(component="profile-watcher")
        self._logged: set[tuple[str, str]] = set()
        watcher.on_publish.append(self.publish)

    def __repr__(self) -> str:
        return f"<ProfileWatcher subscriptions={len(self._subs)}>"

    def compute(self, target: Target, caller: CallerRef, path: str = "") -> pb.DestinationProfile:
        w = self._watcher
        built = build(target, caller, w.index, w.rules, w.dns.lookup, path=path)
        for problem in built.problems:
            if problem not in self._logged and len(self._logged) < MAX_LOGGED_PROBLEMS:
                self._logged.add(problem)
                self._log.warning("rule.skipped", resource=problem[0], reason=problem[1])
        return built.profile

    def subscribe(self, target: Target, caller: CallerRef, listener: LatestProfile, path: str = "") -> None:
        """Send `listener` the current profile at once, then every different one (`path`: as the client sent it)."""
        sub = _Subscription(target, caller, listener, path)
        self._subs.append(sub)
        self._send(sub)

    def unsubscribe(self, listener: LatestProfile) -> None:
        self._subs = [s for s in self._subs if s.listener is not listener]

    def publish(self, changed: frozenset[str] = frozenset({"*"})) -> None:
        only_pods = changed == {POD}
        for sub in list(self._subs):
            if only_pods and not sub.depends_on_pods:
                continue
            self._send(sub)

    def _send(self, sub: _Subscription) -> None:
        try:
            profile = self.compute(sub.target, sub.caller, sub.path)
            encoded = bytes(profile)
            if encoded != sub.last:
                sub.last = encoded
                sub.listener.profile(profile)
        except Exception as e:  # noqa: BLE001 - one bad profile must not stop the others
            self._log.error("profile.failed", subscription=repr(sub), error=repr(e))
            if sub.last is None:  # the first message is due at once: an empty profile (target itself)
                sub.last = b""
                sub.listener.profile(pb.DestinationProfile())
