import random

from meshlet.proxy.balance import P2C, PeakEwma


class Item:
    def __init__(self, name: str, now: float) -> None:
        self.name = name
        self.load = PeakEwma(now)


def test_peak_jumps_up_and_decays_down() -> None:
    e = PeakEwma(0.0, initial=0.01, decay=10.0)
    e.observe(0.5, 1.0)
    assert e.estimate == 0.5  # peak: slower samples count at once
    e.observe(0.01, 11.0)  # one decay period later
    assert 0.01 < e.estimate < 0.5 * 0.4
    e.observe(0.01, 1000.0)
    assert abs(e.estimate - 0.01) < 1e-6


def test_pending_requests_raise_the_cost() -> None:
    e = PeakEwma(0.0, initial=0.01)
    base = e.cost(0.0)
    e.start()
    e.start()
    assert e.cost(0.0) == 3 * base
    e.end(0.01, 0.1)
    assert e.pending == 1


def test_p2c_prefers_the_faster_endpoint() -> None:
    now = 0.0
    fast, slow = Item("fast", now), Item("slow", now)
    slow.load.observe(1.0, now)
    fast.load.observe(0.001, now)
    p2c = P2C(random.Random(1))
    picks = [p2c.choose([fast, slow], now).name for _ in range(100)]
    assert picks.count("fast") == 100  # with two items both are always compared


def test_p2c_spreads_load_over_equal_endpoints() -> None:
    items = [Item(str(i), 0.0) for i in range(5)]
    p2c = P2C(random.Random(7))
    counts = {i.name: 0 for i in items}
    for _ in range(2000):
        counts[p2c.choose(items, 0.0).name] += 1
    assert all(c > 200 for c in counts.values()), counts


def test_p2c_avoids_endpoints_with_pending_requests() -> None:
    items = [Item(str(i), 0.0) for i in range(3)]
    for _ in range(10):
        items[0].load.start()
    p2c = P2C(random.Random(3))
    picks = [p2c.choose(items, 0.0).name for _ in range(300)]
    assert "0" not in picks


def test_single_and_empty() -> None:
    only = Item("only", 0.0)
    assert P2C().choose([only], 0.0) is only
    try:
        P2C().choose([], 0.0)
    except IndexError:
        pass
    else:
        raise AssertionError("empty choice must fail")


def test_an_endpoint_without_fresh_samples_gets_another_chance() -> None:
    fast, slow = Item("fast", 0.0), Item("slow", 0.0)
    slow.load.observe(0.050, 0.0)
    p2c = P2C(random.Random(5))
    now = 0.0
    picks = []
    for _ in range(400):  # one request every 100 ms, each taking 5 ms on the fast endpoint
        item = p2c.choose([fast, slow], now)
        picks.append(item.name)
        item.load.start()
        item.load.end(0.005 if item is fast else 0.050, now + 0.005)
        now += 0.1
    assert picks[0] == "fast"
    assert 0 < picks.count("slow") < picks.count("fast")
