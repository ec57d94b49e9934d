"""Outlier detection with its interval (pure, the clock passed in): ejection at the threshold,
return at the first sweep after `base × multiplier`, multiplier decay per healthy interval,
`maxEjectionPercent`."""
from __future__ import annotations

from meshlet.proxy.cluster import MAX_EJECTION, Outlier
from meshlet.proxy.profile import TrafficPolicy

A, B, C = ("10.0.0.1", 80), ("10.0.0.2", 80), ("10.0.0.3", 80)


def od(**kw: float) -> Outlier:
    return Outlier(TrafficPolicy(**{"consecutive_5xx": 1, "base_ejection": 3.0, "outlier_interval": 1.0,
                                    "max_ejection_percent": 100, **kw}), 0.0)  # type: ignore[arg-type]


def test_return_happens_at_the_first_sweep_after_the_ejection_time() -> None:
    o = od()
    assert o.report(A, 500, 0.4, 2)  # ejected until 3.4
    assert o.ejected(A, 3.5) and o.ejected(A, 3.99)  # not before the sweep at 4.0
    assert not o.ejected(A, 4.0)


def test_second_ejection_lasts_twice_as_long_then_the_multiplier_decays() -> None:
    o = od()
    assert o.report(A, 500, 0.0, 2)
    assert not o.ejected(A, 3.0)  # back at the sweep at 3.0, multiplier 1
    assert o.report(A, 503, 3.2, 2)  # fails again within that interval: multiplier 2
    assert o.describe(3.2)["10.0.0.1:80"] == {"ejected": True, "ejections": 2, "ejected_for_s": 6.0}
    assert o.ejected(A, 9.1) and not o.ejected(A, 10.0)  # 2 × 3 s, back at the sweep at 10.0
    # healthy for one full interval: the multiplier goes down by one; after two it is gone
    assert o.describe(11.0)["10.0.0.1:80"]["ejections"] == 1
    assert o.report(A, 500, 11.5, 2)  # ejected for 2 × 3 s again (multiplier 1 + 1)
    assert o.ejected(A, 17.4) and not o.ejected(A, 18.0)
    assert o.describe(40.0) == {}  # long healthy: no history left


def test_responses_in_between_do_not_decide_the_return() -> None:
    o = od(consecutive_5xx=2)
    o.report(A, 500, 0.0, 2)
    assert o.report(A, 500, 0.1, 2)
    for t in (0.5, 1.5, 2.5):  # an ejected host's (stray) answers neither extend nor shorten it
        assert not o.report(A, 200, t, 2)
        assert not o.report(A, 500, t, 2)
    assert o.ejected(A, 3.05) and not o.ejected(A, 4.0)


def test_max_ejection_percent_keeps_enough_hosts_but_ejects_at_least_one() -> None:
    o = od(max_ejection_percent=50)
    assert o.report(A, 500, 0.0, 3)  # always one
    assert not o.report(B, 500, 0.0, 3)  # 2 of 3 would be 66%
    assert not o.ejected(B, 0.1)
    o4 = od(max_ejection_percent=50)
    assert o4.report(A, 500, 0.0, 4) and o4.report(B, 500, 0.0, 4)  # 2 of 4 = 50%
    assert not o4.report(C, 500, 0.0, 4)
    # once A is back another host may go
    assert not o.ejected(A, 3.0) and o.report(B, 500, 3.0, 3)


def test_ejection_time_is_capped() -> None:
    o = od(base_ejection=200.0, outlier_interval=1000.0)
    assert o.report(A, 500, 0.0, 1)
    assert not o.ejected(A, 1000.0)
    assert o.report(A, 500, 1000.5, 1)  # multiplier 2: 400 s, capped at MAX_EJECTION
    assert o.describe(1000.5)["10.0.0.1:80"]["ejected_for_s"] == MAX_EJECTION
