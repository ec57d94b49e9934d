"""State behind DestinationRule policies and retries (pure; clocks and randomness passed in).

* `RetryBudget`: retries allowed as `ratio` of the requests of the last `ttl` seconds plus
  `min_per_second * ttl`; a retry beyond it is not made.
* `Limiter`: connection-pool limits of one cluster: active requests (http2MaxRequests),
  connections in use (tcp.maxConnections; HTTP/1: one request per connection) with
  `max_pending` waiting for one, the rest overflow (503).
* `Outlier`: consecutive 5xx / gateway errors per endpoint eject it for
  `base_ejection * multiplier`, at most `max_ejection_percent` of the endpoints (at least one);
  a sweep every `interval` returns hosts and decays the multiplier of healthy ones.
* `Cluster`: one backend (authority + subset) with its policy, the above and the balancer
  choice (least request = peak-EWMA P2C, round robin, random, consistent hash by rendezvous
  hashing, locality preference).
"""
from __future__ import annotations

import asyncio
import math
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .balance import P2C
from .endpoints import Balanced
from .errors import Overflow
from .profile import Budget, LbPolicy, TrafficPolicy

SLOTS = 10


class RetryBudget:
    __slots__ = ("cur", "cur_start", "requests", "retries", "skipped", "slot_len", "spec")

    def __init__(self, spec: Budget, now: float) -> None:
        self.spec = spec
        self.slot_len = spec.ttl / SLOTS
        self.requests = [0] * SLOTS
        self.retries = [0] * SLOTS
        self.cur = 0
        self.cur_start = now
        self.skipped = 0

    def _advance(self, now: float) -> None:
        steps = int((now - self.cur_start) / self.slot_len)
        if steps <= 0:
            return
        for _ in range(min(steps, SLOTS)):
            self.cur = (self.cur + 1) % SLOTS
            self.requests[self.cur] = 0
            self.retries[self.cur] = 0
        self.cur_start += steps * self.slot_len

    def request(self, now: float) -> None:
        self._advance(now)
        self.requests[self.cur] += 1

    def try_retry(self, now: float) -> bool:
        """Withdraw one retry; False (and counted as skipped) when the budget is spent."""
        self._advance(now)
        allowed = self.spec.min_per_second * self.spec.ttl + self.spec.ratio * sum(self.requests)
        if sum(self.retries) + 1 > allowed:
            self.skipped += 1
            return False
        self.retries[self.cur] += 1
        return True


class Limiter:
    """Admission to one cluster. A request takes a request slot (at most `max_requests` active,
    http2MaxRequests; beyond: overflow at once); an HTTP/1 request also takes a connection
    (at most `max_active` in use, tcp.maxConnections: HTTP/1 carries one request per connection),
    waiting for one with at most `max_pending` others (http1MaxPendingRequests; beyond: overflow).
    HTTP/2 streams take a request slot only (`acquire_stream`); opaque TCP connections a
    connection only (`try_connection`). `on_overflow(kind)` counts refusals
    ("requests", "pending", "connections")."""

    __slots__ = (
        "active",
        "max_active",
        "max_pending",
        "max_requests",
        "on_overflow",
        "overflows",
        "requests",
        "waiters",
    )

    def __init__(self, max_active: int, max_pending: int, max_requests: int = 0,
                 on_overflow: Callable[[str], None] | None = None) -> None:
        self.max_active = max_active
        self.max_pending = max_pending
        self.max_requests = max_requests
        self.active = 0
        self.requests = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.overflows = 0
        self.on_overflow = on_overflow

    def _overflow(self, kind: str) -> Overflow:
        self.overflows += 1
        if self.on_overflow is not None:
            self.on_overflow(kind)
        return Overflow("overflow")  # as Envoy's UO flag; the kind is in the metrics

    def try_acquire(self) -> bool:
        """A connection slot if one is free now."""
        if not self.max_active or self.active < self.max_active:
            self.active += 1
            return True
        return False

    def _request(self) -> None:
        if self.max_requests and self.requests >= self.max_requests:
            raise self._overflow("requests")
        self.requests += 1

    async def acquire(self) -> None:
        """An HTTP/1 request: a request slot, then a connection (Overflow when neither can be had)."""
        self._request()
        try:
            await self._connection()
        except BaseException:
            self.requests -= 1
            raise

    async def _connection(self) -> None:
        if self.try_acquire():
            return
        if self.max_pending and len(self.waiters) >= self.max_pending:
            raise self._overflow("pending")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release_connection()  # handed over just now: pass it on
            else:
                self.waiters.remove(fut)
            raise

    def release(self) -> None:
        """The end of an HTTP/1 request taken with `acquire`."""
        self.requests = max(self.requests - 1, 0)
        self._release_connection()

    def _release_connection(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the permit goes straight to the next waiter
                return
        self.active = max(self.active - 1, 0)

    def acquire_stream(self) -> None:
        """An HTTP/2 stream (Overflow beyond http2MaxRequests); give back with `release_stream`."""
        self._request()

    def release_stream(self) -> None:
        self.requests = max(self.requests - 1, 0)

    def try_connection(self) -> None:
        """An opaque TCP connection (Overflow beyond maxConnections); give back with `release_connection`."""
        if not self.try_acquire():
            raise self._overflow("connections")

    def release_connection(self) -> None:
        self._release_connection()


MAX_EJECTION = 300.0
"""Envoy's default max_ejection_time: an ejection never lasts longer (unless the base does)."""


class Health:
    __slots__ = ("back_tick", "c5xx", "cgw", "ejected", "ejected_until", "ejections")

    def __init__(self) -> None:
        self.c5xx = 0
        self.cgw = 0
        self.ejected = False
        self.ejected_until = 0.0
        self.ejections = 0
        """The ejection multiplier: +1 per ejection, -1 per full interval healthy after coming back."""
        self.back_tick = 0


class Outlier:
    """Envoy's outlier detection for consecutive errors: a host reaching the threshold is ejected
    at once (if no host is ejected yet, or the ejected share stays within `max_ejection_percent`)
    for `base_ejection × multiplier`; every `outlier_interval` a sweep returns the hosts whose
    time has passed and lowers the multiplier of each host healthy for the whole interval. The
    sweeps are done lazily from the clock passed in (no timers)."""

    def __init__(self, policy: TrafficPolicy, now: float = 0.0) -> None:
        self.policy = policy
        self.health: dict[tuple[str, int], Health] = {}
        self.interval = max(policy.outlier_interval, 0.001)
        self.start = now
        self.tick = 0
        """Index of the last sweep (sweeps happen at start + k × interval)."""
        self.next_sweep = now + self.interval

    def _sweep(self, now: float) -> None:
        k = int((now - self.start) / self.interval)
        if k <= self.tick:
            return
        for h in self.health.values():
            if h.ejected:
                j = max(math.ceil((h.ejected_until - self.start) / self.interval - 1e-9), self.tick + 1)
                if j > k:
                    continue
                h.ejected = False
                h.c5xx = h.cgw = 0
                h.back_tick = j
            if h.ejections:
                h.ejections = max(0, h.ejections - (k - max(self.tick, h.back_tick)))
        self.tick = k
        self.next_sweep = self.start + (k + 1) * self.interval

    def ejected(self, addr: tuple[str, int], now: float) -> bool:
        if now >= self.next_sweep:
            self._sweep(now)
        h = self.health.get(addr)
        return h is not None and h.ejected

    def report(self, addr: tuple[str, int], status: int, now: float, total: int) -> bool:
        """One response (status 0: connect failure/reset) of an endpoint; True when it got ejected."""
        if now >= self.next_sweep:
            self._sweep(now)
        p = self.policy
        h = self.health.get(addr)
        if h is None:
            if len(self.health) > 4096:
                self.health.clear()
            h = self.health[addr] = Health()
        h.c5xx = h.c5xx + 1 if status >= 500 or status == 0 else 0
        h.cgw = h.cgw + 1 if status in (0, 502, 503, 504) else 0
        if h.ejected:
            return False
        if not ((p.consecutive_5xx and h.c5xx >= p.consecutive_5xx)
                or (p.consecutive_gateway and h.cgw >= p.consecutive_gateway)):
            return False
        ejected = sum(1 for x in self.health.values() if x.ejected)
        if total <= 0 or (ejected and (ejected + 1) * 100 > p.max_ejection_percent * total):
            return False
        h.ejections += 1
        h.ejected = True
        h.ejected_until = now + min(p.base_ejection * h.ejections, max(MAX_EJECTION, p.base_ejection))
        h.back_tick = 0
        h.c5xx = h.cgw = 0
        return True

    def describe(self, now: float) -> dict[str, object]:
        """Per endpoint with a history: ejected, seconds left, multiplier (for /config_dump)."""
        self._sweep(now)
        return {f"{ip}:{port}": {"ejected": h.ejected, "ejections": h.ejections,
                                 **({"ejected_for_s": round(h.ejected_until - now, 3)} if h.ejected else {})}
                for (ip, port), h in self.health.items() if h.ejected or h.ejections}


def _hash(key: bytes, b: Balanced) -> int:
    ep = b.endpoint
    return zlib.crc32(key + b"|" + ep.ip.encode() + b":" + str(ep.port).encode())


class Cluster:
    """One backend cluster: endpoints of an authority narrowed to a subset, with its policy."""

    def __init__(self, policy: TrafficPolicy, budget: Budget, p2c: P2C[Any], rng: Any, now: float,
                 zone: str = "", region: str = "", on_overflow: Callable[[str], None] | None = None) -> None:
        self.policy = policy
        self.p2c = p2c
        self.rng = rng
        self.rr = 0
        self.limiter = Limiter(policy.max_connections, policy.max_pending, policy.max_requests,
                               on_overflow) if policy.limited else None
        self.outlier = Outlier(policy, now) if policy.outlier else None
        self.budget = RetryBudget(budget, now)
        self.zone = zone
        self.region = region

    def choose(self, items: Sequence[Balanced], now: float, hash_key: bytes | None) -> Balanced:
        if self.outlier is not None and len(items) > 1:
            healthy = [b for b in items if not self.outlier.ejected(b.endpoint.addr, now)]
            if healthy:  # all ejected: panic, use every endpoint
                items = healthy
        if self.policy.locality and (self.zone or self.region) and len(items) > 1:
            items = self._local(items)
        n = len(items)
        if n == 1:
            return items[0]
        lb = self.policy.lb
        if lb is LbPolicy.ROUND_ROBIN:
            self.rr += 1
            return items[self.rr % n]
        if lb is LbPolicy.RANDOM:
            return items[int(self.rng.random() * n)]
        if lb is LbPolicy.CONSISTENT_HASH and hash_key is not None:
            return max(items, key=lambda b: _hash(hash_key, b))
        return self.p2c.choose(items, now)

    def _local(self, items: Sequence[Balanced]) -> Sequence[Balanced]:
        for key, want in (("topology.kubernetes.io/zone", self.zone),
                          ("topology.kubernetes.io/region", self.region)):
            if want:
                near = [b for b in items if dict(b.endpoint.pod_labels).get(key) == want]
                if near:
                    return near
        return items

    def spent(self, uses: int) -> bool:
        """A connection that served `uses` requests is not reused (maxRequestsPerConnection)."""
        m = self.policy.max_requests_per_connection
        return bool(m) and uses >= m

    def report(self, addr: tuple[str, int], status: int, now: float, total: int) -> bool:
        return self.outlier.report(addr, status, now, total) if self.outlier is not None else False
