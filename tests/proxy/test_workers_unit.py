"""Pure parts of the proxy workers: the concurrency setting, the worker role, metric merging."""
from __future__ import annotations

import os

import pytest
from meshlet.proxy.config import ConfigError, ProxyConfig
from meshlet.proxy.metrics import ProxyMetrics
from meshlet.proxy.workermetrics import ExpositionError, merge, render, total
from meshlet.proxy.workers import WorkerRole
from prometheus_client import generate_latest


def test_concurrency_from_env() -> None:
    assert ProxyConfig.from_env({}).concurrency == 1
    assert ProxyConfig.from_env({"MESHLET_PROXY_CONCURRENCY": "3"}).concurrency == 3
    assert ProxyConfig.from_env({"MESHLET_PROXY_CONCURRENCY": "0"}).concurrency == (os.cpu_count() or 1)
    assert ProxyConfig.from_env({"MESHLET_PROXY_CONCURRENCY": "2"}).public()["concurrency"] == 2
    for bad in ("-1", "two", "1.5", "²"):
        with pytest.raises(ConfigError, match="MESHLET_PROXY_CONCURRENCY"):
            ProxyConfig.from_env({"MESHLET_PROXY_CONCURRENCY": bad})


def test_worker_role() -> None:
    assert WorkerRole.parse("1:7:4242") == WorkerRole(1, 7, 4242)
    for bad in ("", "1:7", "a:b:c", "1:7:8:9"):
        with pytest.raises(ValueError, match="MESHLET_PROXY_WORKER"):
            WorkerRole.parse(bad)


def _worker(requests: int, expiry: float) -> str:
    m = ProxyMetrics("demo", "web-1")
    r = m.route(m.base("inbound", authority="web:80"))
    r.requests += requests
    for _ in range(requests):
        r.response(200, 3.5)
    r.response(503, 12.0, grpc_status=14)
    t = m.tcp(m.base("inbound") + ("src",))
    t.opened()
    t.read_bytes += 100
    m.identity_cert_expiry.labels("demo", "web-1").set(expiry)
    m.retry("web:80")
    return generate_latest(m.registry).decode()


def test_merge_adds_counters_histograms_and_gauges_keeps_earliest_timestamps() -> None:
    text = render(merge([_worker(2, 2000.0), _worker(3, 1000.0)])).decode()
    assert total(text, "request_total", direction="inbound") == 5
    assert total(text, "response_total", status_code="200", classification="success") == 5
    assert total(text, "response_total", grpc_status_code="14", classification="failure") == 2
    assert total(text, "response_latency_ms_count", status_code="200") == 5
    assert total(text, "response_latency_ms_bucket", status_code="200", le="4") == 5
    assert total(text, "response_latency_ms_sum", status_code="200") == pytest.approx(17.5)
    assert total(text, "tcp_open_connections", peer="src") == 2
    assert total(text, "tcp_read_bytes_total") == 200
    assert total(text, "retry_total") == 2
    assert total(text, "identity_cert_expiration_timestamp_seconds") == 1000.0
    assert "# TYPE response_latency_ms histogram" in text
    assert text.count("# TYPE request_total counter") == 1


def test_merge_of_nothing_and_bad_input() -> None:
    assert render(merge([])) == b""
    with pytest.raises(ExpositionError):
        merge(['request_total{a="1" 3\n'])


# === the parent's side of the control channel, with in-process stand-in workers ===

def _listening(name: str):
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(name)
    s.listen(4)
    s.setblocking(False)
    return s


async def _fake_worker(index: int, requests: int, ready: bool):
    import json

    from meshlet.proxy import admin

    name = f"\0meshlet-test.{os.getpid()}.{os.urandom(4).hex()}.{index}"
    text = _worker(requests, 1000.0 + index)

    async def metrics():
        return 200, "text/plain", text.encode()

    async def ready_():
        return admin.text(200 if ready else 503, "x\n")

    async def dump():
        return admin.as_json(200, {"config": {"pod": "web-1"}, "ready": ready, "profiles": {}})

    server = await admin.serve_socket(_listening(name), {
        ("GET", "/metrics"): metrics, ("GET", "/ready"): ready_, ("GET", "/config_dump"): dump})
    return name, server, json


async def test_parent_aggregates_its_workers() -> None:
    import json

    import structlog
    from meshlet.proxy.workers import Parent

    parent = Parent(ProxyConfig(namespace="demo", pod="web-1"), structlog.get_logger(), 2)
    servers = []
    for w, (requests, ready) in zip(parent.workers, ((2, True), (3, True)), strict=True):
        w.address, server, _ = await _fake_worker(w.index, requests, ready)
        servers.append(server)
    try:
        assert (await parent._ready())[0] == 200
        status, _, body = await parent._metrics()
        text = body.decode()
        assert status == 200 and total(text, "request_total") == 5 and total(text, "proxy_workers") == 2
        assert total(text, "identity_cert_expiration_timestamp_seconds") == 1000.0
        dump = json.loads((await parent._config_dump())[2])
        assert dump["concurrency"] == 2 and dump["ready"] is True and "profiles" in dump
        assert [w["request_total"] for w in dump["workers"]] == [2, 3]
        # one worker gone: not ready, the dump says which, metrics carry the other's
        servers[1].close()
        await servers[1].wait_closed()
        status, _, body = await parent._ready()
        assert status == 503 and b"[1]" in body
        assert total((await parent._metrics())[2].decode(), "request_total") == 2
        dump = json.loads((await parent._config_dump())[2])
        assert dump["ready"] is False and "worker 1" in dump["workers"][1]["error"]
    finally:
        for s in servers:
            s.close()


async def test_a_worker_that_never_answers_times_out() -> None:
    from meshlet.proxy.workers import Worker, WorkerError

    w = Worker(0)
    w.address = f"\0meshlet-test.{os.getpid()}.silent"
    sock = _listening(w.address)  # listening, never accepting: the request is never answered
    try:
        with pytest.raises(WorkerError, match="no answer within 0.2s"):
            await w.ask("GET", "/ready", timeout=0.2)
    finally:
        sock.close()
    with pytest.raises(WorkerError, match="worker 0: GET /ready"):
        await w.ask("GET", "/ready", timeout=0.2)
