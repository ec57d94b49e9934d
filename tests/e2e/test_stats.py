"""The demo's stats math: parsing, deltas, Prometheus-style quantiles, the table."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from meshlet.e2e.stats import (
    INF,
    MetricsParseError,
    ProxyCounters,
    delta,
    histogram_quantile,
    inbound_counters,
    merge,
    parse_samples,
    render_table,
    workload_stat,
)

METRICS = """\
# HELP request_total Total number of HTTP requests.
# TYPE request_total counter
request_total{direction="inbound",authority="productpage:9080",tls="true",namespace="bookinfo",pod="p"} 7
request_total{direction="inbound",authority="productpage:9080",tls="false",namespace="bookinfo",pod="p"} 3
request_total{direction="outbound",authority="reviews:9080",tls="true",namespace="bookinfo",pod="p"} 100
# HELP response_total Total number of HTTP responses.
# TYPE response_total counter
response_total{direction="inbound",classification="success",status_code="200"} 9
response_total{direction="inbound",classification="failure",status_code="503"} 1
response_total{direction="outbound",classification="failure",status_code="503"} 50
# HELP response_latency_ms Elapsed times between a request's headers being received and its response stream completing.
# TYPE response_latency_ms histogram
response_latency_ms_bucket{direction="inbound",status_code="200",le="10.0"} 5
response_latency_ms_bucket{direction="inbound",status_code="200",le="20.0"} 9
response_latency_ms_bucket{direction="inbound",status_code="200",le="+Inf"} 9
response_latency_ms_bucket{direction="inbound",status_code="503",le="10.0"} 0
response_latency_ms_bucket{direction="inbound",status_code="503",le="20.0"} 1
response_latency_ms_bucket{direction="inbound",status_code="503",le="+Inf"} 1
response_latency_ms_count{direction="inbound",status_code="200"} 9
response_latency_ms_sum{direction="inbound",status_code="200"} 90
response_latency_ms_bucket{direction="outbound",status_code="200",le="+Inf"} 1000
# TYPE tcp_open_connections gauge
tcp_open_connections{direction="inbound",peer="src"} 2
tcp_open_connections{direction="outbound",peer="dst"} 5
"""


def test_inbound_counters_from_text() -> None:
    c = inbound_counters(parse_samples(METRICS))
    assert (c.success, c.failure, c.total) == (9, 1, 10)
    assert c.buckets == {10.0: 5, 20.0: 10, INF: 10}
    assert c.tcp_open == 2
    assert (c.tls_requests, c.requests) == (7, 10)


def test_parse_rejects_garbage() -> None:
    with pytest.raises(MetricsParseError):
        parse_samples("request_total{direction=\"inbound\" 1\n")


def test_quantile_interpolates_like_prometheus() -> None:
    b = {10.0: 50.0, 20.0: 100.0, INF: 100.0}
    assert histogram_quantile(0.5, b) == pytest.approx(10.0)
    assert histogram_quantile(0.75, b) == pytest.approx(15.0)
    assert histogram_quantile(0.99, b) == pytest.approx(19.8)
    assert histogram_quantile(0.25, b) == pytest.approx(5.0)


def test_quantile_edges() -> None:
    assert histogram_quantile(0.9, {10.0: 50.0, INF: 100.0}) == 10.0  # rank in +Inf: highest finite bound
    assert histogram_quantile(0.5, {10.0: 0.0, INF: 0.0}) is None
    assert histogram_quantile(0.5, {10.0: 5.0}) is None  # no +Inf bucket
    assert histogram_quantile(0.5, {}) is None
    assert histogram_quantile(-1, {10.0: 1.0, INF: 1.0}) == -INF
    assert histogram_quantile(2, {10.0: 1.0, INF: 1.0}) == INF
    # non-monotonic buckets are repaired as Prometheus does
    assert histogram_quantile(0.5, {10.0: 4.0, 20.0: 3.0, INF: 4.0}) == pytest.approx(5.0)


@given(
    counts=st.lists(st.integers(0, 1000), min_size=1, max_size=8),
    q1=st.floats(0, 1),
    q2=st.floats(0, 1),
)
def test_quantile_monotonic_and_bounded(counts: list[int], q1: float, q2: float) -> None:
    bounds = [float(2 ** i) for i in range(len(counts))]
    cumulative, running = {}, 0
    for b, c in zip(bounds, counts):
        running += c
        cumulative[b] = float(running)
    cumulative[INF] = float(running)
    lo, hi = sorted((q1, q2))
    a, b = histogram_quantile(lo, cumulative), histogram_quantile(hi, cumulative)
    if running == 0:
        assert a is None and b is None
        return
    assert a is not None and b is not None
    if not (math.isnan(a) or math.isnan(b)):
        assert 0 <= a <= b <= bounds[-1]


def test_delta_and_counter_reset() -> None:
    before = ProxyCounters(success=10, failure=2, buckets={10.0: 8, INF: 12}, tcp_open=1, requests=12, tls_requests=12)
    after = ProxyCounters(success=30, failure=2, buckets={10.0: 20, INF: 32}, tcp_open=3, requests=32, tls_requests=30)
    d = delta(before, after)
    assert (d.success, d.failure, d.buckets, d.tcp_open, d.requests, d.tls_requests) == (
        20, 0, {10.0: 12, INF: 20}, 3, 20, 18)
    restarted = delta(after, ProxyCounters(success=5, buckets={INF: 5}))
    assert (restarted.success, restarted.buckets) == (5, {INF: 5})


def test_merge_sums_pods() -> None:
    m = merge([ProxyCounters(success=1, buckets={1.0: 1, INF: 1}, tcp_open=1),
               ProxyCounters(failure=1, buckets={1.0: 0, INF: 1})])
    assert (m.success, m.failure, m.buckets, m.tcp_open) == (1, 1, {1.0: 1, INF: 2}, 1)


def test_workload_stat_and_table() -> None:
    window = ProxyCounters(success=99, failure=1, buckets={5.0: 50, 10.0: 100, INF: 100}, tcp_open=2,
                           requests=100, tls_requests=100)
    s = workload_stat("productpage-v1", meshed=1, pods=1, window=window, seconds=10)
    assert s.success_rate == pytest.approx(0.99)
    assert s.rps == pytest.approx(10)
    assert s.p50_ms == pytest.approx(5) and s.p99_ms == pytest.approx(9.9)
    assert s.tls_rate == 1.0
    unmeshed = workload_stat("sleep", meshed=0, pods=1, window=None, seconds=10)
    table = render_table([s, unmeshed])
    lines = table.splitlines()
    assert lines[0].split() == ["NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99",
                                "TCP_CONN"]
    assert lines[1].split() == ["productpage-v1", "1/1", "99.00%", "10.0rps", "5ms", "9.5ms", "9.9ms", "2"]
    assert lines[2].split() == ["sleep", "0/1", "-", "-", "-", "-", "-", "-"]


def test_no_traffic_is_dash_not_zero() -> None:
    idle = workload_stat("sleep", meshed=1, pods=1, window=ProxyCounters(tcp_open=0), seconds=5)
    assert render_table([idle]).splitlines()[1].split() == ["sleep", "1/1", "-", "-", "-", "-", "-", "0"]
