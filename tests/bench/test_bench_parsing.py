"""Reading the load tools' output."""
import json

import pytest

from bench.load import LoadError, oha_cmd, parse_oha, parse_wrk, wrk_cmd

OHA_JSON = {
    "summary": {"successRate": 1.0, "total": 10.0, "slowest": 0.01, "fastest": 0.0001, "average": 0.0004,
                "requestsPerSec": 499.9, "totalData": 205000, "sizePerRequest": 41, "sizePerSec": 2049.0},
    "latencyPercentiles": {"p10": 0.0002, "p25": 0.0003, "p50": 0.000412, "p75": 0.0005, "p90": 0.0006,
                           "p95": 0.0007, "p99": 0.00123, "p99.9": 0.0042, "p99.99": 0.008},
    "statusCodeDistribution": {"200": 4990, "503": 10},
    "errorDistribution": {"connection closed": 2, "aborted due to deadline": 3},
}

WRK_OUT = """\
Running 10s test @ http://127.0.0.1:15080/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.71ms    5.12ms  60.00ms   90.00%
    Req/Sec     6.75k   400.00     7.00k    70.00%
  Latency Distribution
     50%  712.00us
     75%    3.00ms
     90%    8.00ms
     99%    1.20s
  67494 requests in 10.00s, 10.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   6706.27
Transfer/sec:      1.00MB
"""


def test_oha_json_in_milliseconds_with_errors_and_non_200():
    r = parse_oha(500, json.dumps(OHA_JSON))
    assert (r.rate, r.requests, r.achieved_rps) == (500, 5000, 499.9)
    assert r.p50_ms == pytest.approx(0.412)
    assert r.p99_ms == pytest.approx(1.23)
    assert r.p999_ms == pytest.approx(4.2)
    assert r.errors == {"connection closed": 2, "HTTP 503": 10}


@pytest.mark.parametrize("text", ["", "not json", json.dumps({"summary": {}}),
                                  json.dumps({**OHA_JSON, "latencyPercentiles": {"p50": None}})])
def test_oha_unreadable_output_is_a_clear_error(text):
    with pytest.raises(LoadError):
        parse_oha(500, text)


def test_wrk_output():
    r = parse_wrk(32, WRK_OUT)
    assert (r.requests, r.rps, r.errors) == (67494, 6706.27, 9)
    assert r.p50_ms == pytest.approx(0.712)
    assert r.p99_ms == pytest.approx(1200.0)


def test_wrk_garbage_is_a_clear_error():
    with pytest.raises(LoadError, match="cannot read wrk output"):
        parse_wrk(32, "unable to connect to 127.0.0.1:15080 Connection refused")


def test_commands_ask_for_corrected_fixed_rate_and_closed_loop():
    cmd = oha_cmd("/x/oha", "http://a/", rate=2000, seconds=10, connections=32)  # type: ignore[arg-type]
    assert cmd[0] == "/x/oha"
    assert ["-q", "2000", "--latency-correction"] == cmd[cmd.index("-q"):cmd.index("-q") + 3]
    assert "--no-tui" in cmd and cmd[-1] == "http://a/"
    assert wrk_cmd("http://a/", seconds=10, connections=32) == ["wrk", "-t1", "-c32", "-d10s", "--latency", "http://a/"]


def test_rounds_combine_to_medians_and_sums():
    from bench.load import ClosedLoop, FixedRate, combine_closed, combine_fixed

    runs = [FixedRate(rate=500, requests=2000, achieved_rps=r, success_rate=1.0, p50_ms=p, p99_ms=p * 2,
                      p999_ms=p * 3, errors=e) for r, p, e in ((499.0, 0.5, {}), (501.0, 0.4, {"x": 1}),
                                                               (500.0, 9.0, {"x": 2, "y": 1}))]
    c = combine_fixed(runs)
    assert (c.requests, c.achieved_rps, c.p50_ms, c.p99_ms, c.p999_ms) == (6000, 500.0, 0.5, 1.0, 1.5)
    assert c.errors == {"x": 3, "y": 1}
    closed = combine_closed([ClosedLoop(32, 10, 100.0, 1.0, 5.0, 0), ClosedLoop(32, 30, 300.0, 3.0, 9.0, 2)])
    assert (closed.requests, closed.rps, closed.p99_ms, closed.errors) == (40, 200.0, 7.0, 2)
    with pytest.raises(ValueError):
        combine_fixed([])
