"""Peak-EWMA power-of-two-choices load balancing (pure; the clock is passed in).

Each endpoint keeps a latency estimate that jumps up to any slower sample at
once (peak) and decays towards faster ones with time constant `decay`; its
cost is `estimate * (pending + 1)`. `choose` picks two distinct endpoints at
random and returns the cheaper one (Linkerd's balancer).
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_RTT = 0.005
"""Prior latency estimate (seconds) of an endpoint without samples yet."""
DECAY = 10.0
"""Seconds for the estimate to decay by 1/e towards faster samples."""


class PeakEwma:
    __slots__ = ("estimate", "stamp", "pending", "decay")

    def __init__(self, now: float, *, initial: float = DEFAULT_RTT, decay: float = DECAY) -> None:
        self.estimate = initial
        self.stamp = now
        self.pending = 0
        self.decay = decay

    def observe(self, rtt: float, now: float) -> None:
        if rtt > self.estimate:
            self.estimate = rtt
        else:
            elapsed = max(now - self.stamp, 0.0)
            w = math.exp(-elapsed / self.decay)
            self.estimate = self.estimate * w + rtt * (1.0 - w)
        self.stamp = now

    def cost(self, now: float) -> float:
        # the estimate of an endpoint without fresh samples decays (towards zero, as Finagle's),
        # so a once-slow or not yet tried endpoint gets another chance
        elapsed = now - self.stamp
        est = self.estimate * math.exp(-elapsed / self.decay) if elapsed > 0.0 else self.estimate
        return est * (self.pending + 1)

    def start(self) -> None:
        self.pending += 1

    def end(self, rtt: float, now: float) -> None:
        if self.pending > 0:
            self.pending -= 1
        self.observe(rtt, now)

    def __repr__(self) -> str:
        return f"<PeakEwma estimate={self.estimate * 1000:.3f}ms pending={self.pending}>"


class P2C(Generic[T]):
    """Chooses among items that each carry a `PeakEwma` as `.load`."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, items: Sequence[T], now: float) -> T:
        n = len(items)
        if n == 0:
            raise IndexError("no endpoints to choose from")
        if n == 1:
            return items[0]
        rng = self._rng
        i = int(rng.random() * n)
        j = int(rng.random() * (n - 1))
        if j >= i:
            j += 1
        a, b = items[i], items[j]
        return a if a.load.cost(now) <= b.load.cost(now) else b  # type: ignore[attr-defined]
