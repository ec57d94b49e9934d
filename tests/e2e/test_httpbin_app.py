"""The httpbin sample on loopback, without the mesh; its manifests load through meshlet's model."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest
from e2e_support import StartApp
from meshlet.controller.local.spec import DeploymentSpec
from meshlet.controller.model import to_obj
from meshlet.controller.model.loader import load_paths
from meshlet.e2e.apps.httpbin import HTTPBIN_DIR
from meshlet.e2e.apps.httpbin.app import (
    BadRequest,
    ConfigError,
    HttpbinSettings,
    RequestStats,
    build_app,
    parse_delay,
    parse_status_codes,
)


def settings(version: str = "v1") -> HttpbinSettings:
    return HttpbinSettings(host="127.0.0.1", port=0, version=version, pod_name="httpbin-test")


async def fetch(method: str, url: str, **kw: object) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.request(method, url, **kw) as r:  # type: ignore[arg-type]
        return r.status, dict(r.headers), await r.read()


def test_parse_status_codes() -> None:
    assert parse_status_codes("418") == [418]
    assert parse_status_codes("500, 200") == [500, 200]
    for bad in ("abc", "99", "600", "", "200,,"):
        with pytest.raises(BadRequest):
            parse_status_codes(bad)


def test_parse_delay_caps_at_ten_seconds() -> None:
    assert parse_delay("0.5") == 0.5
    assert parse_delay("60") == 10.0
    for bad in ("-1", "nan", "x"):
        with pytest.raises(BadRequest):
            parse_delay(bad)


def test_settings_from_env() -> None:
    s = HttpbinSettings.from_env({"SERVICE_VERSION": "v2", "POD_NAME": "p", "HTTPBIN_PORT": "18000"})
    assert (s.version, s.pod_name, s.port) == ("v2", "p", 18000)
    assert HttpbinSettings.from_env({}).port == 8000
    with pytest.raises(ConfigError, match="HTTPBIN_PORT"):
        HttpbinSettings.from_env({"HTTPBIN_PORT": "eighty"})


def test_stats_are_bounded() -> None:
    stats = RequestStats(max_paths=2)
    for path in ("/a", "/b", "/c", "/a"):
        stats.record(path)
    assert stats.dump() == {"total": 4, "paths": {"/a": 2, "/b": 1}}


async def test_status_codes_and_version_header(start_app: StartApp) -> None:
    base = await start_app(build_app(settings("v2")))
    status, headers, _ = await fetch("GET", f"{base}/status/503")
    assert status == 503 and headers["x-version"] == "v2" and headers["x-pod"] == "httpbin-test"
    assert (await fetch("POST", f"{base}/status/201"))[0] == 201
    assert (await fetch("GET", f"{base}/status/418"))[0] == 418
    seen = {(await fetch("GET", f"{base}/status/500,200"))[0] for _ in range(40)}
    assert seen == {500, 200}
    status, _, body = await fetch("GET", f"{base}/status/abc")
    assert status == 400 and b"invalid status code" in body


async def test_headers_ip_get_anything(start_app: StartApp) -> None:
    base = await start_app(build_app(settings()))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/headers", headers={"end-user": "jason"}) as r:
            assert (await r.json())["headers"]["End-User"] == "jason"
        async with s.get(f"{base}/ip") as r:
            assert (await r.json()) == {"origin": "127.0.0.1"}
        async with s.get(f"{base}/get?a=1") as r:
            body = await r.json()
            assert body["args"] == {"a": "1"} and body["origin"] == "127.0.0.1"
        async with s.put(f"{base}/anything/x/y", data=b"hello") as r:
            body = await r.json()
            assert body["method"] == "PUT" and body["data"] == "hello" and body["url"].endswith("/anything/x/y")
        async with s.get(f"{base}/") as r:
            assert "httpbin v1" in await r.text()


async def test_delay_waits_and_stats_count(start_app: StartApp) -> None:
    base = await start_app(build_app(settings()))
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _, _ = await fetch("GET", f"{base}/delay/0.3")
    assert status == 200 and loop.time() - started >= 0.3
    for _ in range(3):
        await fetch("GET", f"{base}/get")
    async with aiohttp.ClientSession() as s, s.get(f"{base}/stats") as r:
        stats = await r.json()
    assert stats["paths"] == {"/delay/0.3": 1, "/get": 3} and stats["total"] == 4 and stats["version"] == "v1"


def test_manifests_load_and_run_locally() -> None:
    resources = load_paths([str(HTTPBIN_DIR)])
    kinds = sorted((r.kind, r.metadata.name) for r in resources)
    assert kinds == [("Deployment", "httpbin-v1"), ("Deployment", "httpbin-v2"), ("Namespace", "httpbin"),
                     ("Service", "httpbin"), ("ServiceAccount", "httpbin")]
    svc = next(r for r in resources if r.kind == "Service")
    assert [(p.name, p.port) for p in svc.spec.ports] == [("http", 8000)]
    for r in resources:
        if r.kind == "Deployment":
            spec = DeploymentSpec.from_obj(to_obj(r))
            assert spec.containers[0].argv == ("python", "-m", "meshlet.e2e.apps.httpbin")
            assert r.spec.template.metadata.labels["version"] == r.metadata.name.rsplit("-", 1)[1]


def test_module_runs_as_a_process(unused_tcp_port: int) -> None:
    env = {**os.environ, "HTTPBIN_HOST": "127.0.0.1", "HTTPBIN_PORT": str(unused_tcp_port), "SERVICE_VERSION": "v9"}
    proc = subprocess.Popen([sys.executable, "-m", "meshlet.e2e.apps.httpbin"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/get", timeout=5) as resp:
                    assert resp.headers["x-version"] == "v9"
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_admin_fail_switch(start_app: StartApp) -> None:
    base = await start_app(build_app(settings()))
    assert (await fetch("POST", f"{base}/admin/fail/503"))[0] == 200
    status, headers, body = await fetch("GET", f"{base}/get")
    assert status == 503 and headers["x-version"] == "v1" and body == b"failing on purpose\n"
    assert (await fetch("GET", f"{base}/stats"))[0] == 200
    assert (await fetch("POST", f"{base}/admin/fail/abc"))[0] == 400
    assert (await fetch("POST", f"{base}/admin/fail/0"))[0] == 200
    assert (await fetch("GET", f"{base}/get"))[0] == 200
