"""Retry budget, connection-pool limiter, outlier ejection and balancer policies (pure)."""
from __future__ import annotations

import asyncio
import random

import pytest

from meshlet.proxy.balance import P2C
from meshlet.proxy.cluster import Cluster, Limiter, Outlier, RetryBudget
from meshlet.proxy.config import ConfigError, ProxyConfig
from meshlet.proxy.endpoints import Balanced, Endpoint
from meshlet.proxy.errors import Overflow
from meshlet.proxy.profile import Budget, LbPolicy, Retry, TrafficPolicy


def eps(n: int, **labels: str) -> list[Balanced]:
    return [Balanced(Endpoint(f"10.0.0.{i}", 80, pod_labels=tuple(sorted(labels.items()))), 0.0) for i in range(n)]


def test_budget_allows_a_ratio_of_requests_plus_a_floor_and_expires() -> None:
    b = RetryBudget(Budget(ratio=0.2, min_per_second=0, ttl=10.0), 0.0)
    for _ in range(10):
        b.request(1.0)
    assert [b.try_retry(1.0) for _ in range(4)] == [True, True, False, False]
    assert b.skipped == 2
    # after the ttl the old requests and retries are forgotten
    for _ in range(5):
        b.request(20.0)
    assert b.try_retry(20.0) and not b.try_retry(20.0)
    floor = RetryBudget(Budget(ratio=0.0, min_per_second=1, ttl=3.0), 0.0)
    assert [floor.try_retry(0.5) for _ in range(4)] == [True, True, True, False]


def test_retry_conditions() -> None:
    r = Retry(attempts=2, on_5xx=True, codes=frozenset({429}))
    assert r.status_retriable(503) and r.status_retriable(500) and r.status_retriable(429)
    assert not r.status_retriable(404)
    g = Retry(attempts=1, on_gateway=True, on_409=True)
    assert g.status_retriable(502) and g.status_retriable(409) and not g.status_retriable(500)


async def test_limiter_queues_up_to_max_pending_then_overflows() -> None:
    lim = Limiter(1, 1)
    await lim.acquire()
    waiter = asyncio.ensure_future(lim.acquire())
    await asyncio.sleep(0)
    with pytest.raises(Overflow):
        await lim.acquire()
    assert lim.overflows == 1 and not waiter.done()
    lim.release()  # handed to the waiter
    await waiter
    assert lim.active == 1
    lim.release()
    assert lim.active == 0
    # a cancelled waiter leaves the queue
    await lim.acquire()
    w = asyncio.ensure_future(lim.acquire())
    await asyncio.sleep(0)
    w.cancel()
    await asyncio.gather(w, return_exceptions=True)
    assert not lim.waiters
    lim.release()
    assert lim.active == 0


def test_outlier_ejects_after_consecutive_errors_and_grows_the_ejection() -> None:
    o = Outlier(TrafficPolicy(consecutive_5xx=2, base_ejection=1.0, max_ejection_percent=50, outlier_interval=1.0))
    a, b = ("10.0.0.1", 80), ("10.0.0.2", 80)
    assert not o.report(a, 500, 0.0, 2)
    assert not o.report(a, 200, 0.0, 2)  # not consecutive
    assert not o.report(a, 503, 0.0, 2)
    assert o.report(a, 500, 0.0, 2) and o.ejected(a, 0.5)
    # at most 50% of 2 endpoints: b stays in
    o.report(b, 500, 0.1, 2)
    assert not o.report(b, 500, 0.1, 2) and not o.ejected(b, 0.2)
    assert not o.ejected(a, 1.01)  # back after base_ejection x 1 (at the sweep at 1.0)
    o.report(a, 500, 1.5, 2)
    assert o.report(a, 500, 1.5, 2)  # within the interval it came back in: the multiplier is still 1
    assert o.ejected(a, 3.9) and not o.ejected(a, 4.01)  # second ejection: 2 x base, back at the sweep at 4.0
    gw = Outlier(TrafficPolicy(consecutive_gateway=1, max_ejection_percent=100))
    assert not gw.report(a, 500, 0.0, 2) and gw.report(a, 0, 0.0, 2)  # connect failure is a gateway error


def test_cluster_skips_ejected_endpoints_and_panics_when_all_are() -> None:
    c = Cluster(TrafficPolicy(lb=LbPolicy.ROUND_ROBIN, consecutive_5xx=1, max_ejection_percent=100), Budget(),
                P2C(random.Random(1)), random.Random(1), 0.0)
    items = eps(3)
    assert c.report(items[0].endpoint.addr, 500, 0.0, 3)
    chosen = {c.choose(items, 1.0, None).endpoint.ip for _ in range(20)}
    assert chosen == {"10.0.0.1", "10.0.0.2"}
    for b in items[1:]:
        c.report(b.endpoint.addr, 500, 1.0, 3)
    assert len({c.choose(items, 1.5, None).endpoint.ip for _ in range(20)}) == 3  # panic: all again


def test_round_robin_random_and_least_request() -> None:
    items = eps(3)
    rr = Cluster(TrafficPolicy(lb=LbPolicy.ROUND_ROBIN), Budget(), P2C(), random.Random(2), 0.0)
    seq = [rr.choose(items, 0.0, None).endpoint.ip for _ in range(6)]
    assert seq[:3] == seq[3:] and len(set(seq[:3])) == 3
    rnd = Cluster(TrafficPolicy(lb=LbPolicy.RANDOM), Budget(), P2C(), random.Random(2), 0.0)
    counts: dict[str, int] = {}
    for _ in range(3000):
        ip = rnd.choose(items, 0.0, None).endpoint.ip
        counts[ip] = counts.get(ip, 0) + 1
    assert all(800 < n < 1200 for n in counts.values())
    lr = Cluster(TrafficPolicy(), Budget(), P2C(random.Random(3)), random.Random(3), 0.0)
    items[0].load.pending = 50  # the busy one is avoided
    assert all(lr.choose(items, 0.0, None) is not items[0] for _ in range(50))


def test_consistent_hash_is_stable_and_moves_few_keys() -> None:
    c = Cluster(TrafficPolicy(lb=LbPolicy.CONSISTENT_HASH), Budget(), P2C(), random.Random(4), 0.0)
    items = eps(5)
    keys = [f"user-{i}".encode() for i in range(500)]
    first = {k: c.choose(items, 0.0, k).endpoint.ip for k in keys}
    assert first == {k: c.choose(list(reversed(items)), 5.0, k).endpoint.ip for k in keys}
    assert len(set(first.values())) == 5
    fewer = items[:4]  # one endpoint leaves: only its keys move
    moved = sum(1 for k in keys if c.choose(fewer, 0.0, k).endpoint.ip != first[k])
    assert moved == sum(1 for v in first.values() if v == "10.0.0.4")


def test_locality_prefers_the_zone_then_the_region() -> None:
    near = eps(1, **{"topology.kubernetes.io/zone": "z1", "topology.kubernetes.io/region": "r1"})
    region = [Balanced(Endpoint("10.1.0.1", 80, pod_labels=(("topology.kubernetes.io/region", "r1"),)), 0.0)]
    far = [Balanced(Endpoint("10.2.0.1", 80), 0.0)]
    c = Cluster(TrafficPolicy(locality=True), Budget(), P2C(random.Random(5)), random.Random(5), 0.0,
                zone="z1", region="r1")
    assert all(c.choose(near + region + far, 0.0, None) is near[0] for _ in range(20))
    assert all(c.choose(region + far, 0.0, None) is region[0] for _ in range(20))


def test_pod_labels_from_the_environment() -> None:
    cfg = ProxyConfig.from_env({"MESHLET_PROXY_POD_LABELS": '{"app": "web", "version": "v2"}'})
    assert cfg.pod_labels == (("app", "web"), ("version", "v2"))
    cfg = ProxyConfig.from_env({"MESHLET_PROXY_POD_LABELS": "app=web, version=v2"})
    assert cfg.pod_labels == (("app", "web"), ("version", "v2"))
    with pytest.raises(ConfigError, match="MESHLET_PROXY_POD_LABELS"):
        ProxyConfig.from_env({"MESHLET_PROXY_POD_LABELS": "novalue"})
    with pytest.raises(ConfigError, match="MESHLET_PROXY_POD_LABELS"):
        ProxyConfig.from_env({"MESHLET_PROXY_POD_LABELS": '{"a": 1}'})
