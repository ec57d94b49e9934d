"""The demo driver against fake pods on loopback: real HTTP traffic and real metrics scrapes."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiohttp import web
from e2e_support import StartApp
from meshlet.e2e.demo import DriveConfig, drive, run_demo, summary
from meshlet.e2e.pods import PodInfo
from meshlet.e2e.stats import render_table
from meshlet.e2e.target import TargetError


class FakeProxiedPod:
    """Answers the app port and exposes Linkerd-style inbound metrics that count what it served."""

    def __init__(self) -> None:
        self.served = 0

    def app(self) -> web.Application:
        async def page(request: web.Request) -> web.Response:
            self.served += 1
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/productpage", page)
        return app

    def metrics_app(self) -> web.Application:
        async def metrics(request: web.Request) -> web.Response:
            n = self.served
            fast = n // 2
            text = (
                "# TYPE request_total counter\n"
                f'request_total{{direction="inbound",tls="true"}} {n}\n'
                "# TYPE response_total counter\n"
                f'response_total{{direction="inbound",classification="success",status_code="200"}} {n}\n'
                "# TYPE response_latency_ms histogram\n"
                f'response_latency_ms_bucket{{direction="inbound",le="1.0"}} {fast}\n'
                f'response_latency_ms_bucket{{direction="inbound",le="10.0"}} {n}\n'
                f'response_latency_ms_bucket{{direction="inbound",le="+Inf"}} {n}\n'
                f'response_latency_ms_count{{direction="inbound"}} {n}\n'
                f'response_latency_ms_sum{{direction="inbound"}} {n}\n'
                "# TYPE tcp_open_connections gauge\n"
                'tcp_open_connections{direction="inbound"} 1\n'
            )
            return web.Response(text=text, content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        return app


class FakeTarget:
    def __init__(self, pods: list[PodInfo], ports: dict[tuple[str, int], str]) -> None:
        self._pods = pods
        self._ports = ports

    def up(self, manifests: Path) -> None: ...

    def down(self) -> None: ...

    def apply(self, manifests: Path) -> None: ...

    def delete(self, kind: str, namespace: str, name: str) -> None: ...

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        return ""

    def pods(self, namespace: str) -> list[PodInfo]:
        return [p for p in self._pods if p.namespace == namespace]

    def deployments(self, namespace: str) -> list[str]:
        return ["productpage-v1", "sleep"]

    def exec(self, namespace: str, pod: str, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

    def pod_address(self, pod: PodInfo, port: int) -> str:
        return self._ports.get((pod.name, port), "127.0.0.1:9")


async def test_run_demo_prints_sane_stats(start_app: StartApp) -> None:
    fake = FakeProxiedPod()
    app_url = await start_app(fake.app())
    metrics_url = await start_app(fake.metrics_app())
    pp = PodInfo("bookinfo", "productpage-v1-abc12-x1y2z", "198.18.0.9", "Running", True, True, {"app": "productpage"})
    sleep = PodInfo("bookinfo", "sleep-abc12-q1w2e", "198.18.0.10", "Running", True, False, {"app": "sleep"})
    target = FakeTarget([pp, sleep], {
        (pp.name, 9080): app_url.removeprefix("http://"),
        (pp.name, 15090): metrics_url.removeprefix("http://"),
    })
    demo = await run_demo(target, namespace="bookinfo", service="productpage", port=9080, path="/productpage",
                          duration_s=0.5, concurrency=2, max_requests=40, wait_s=5)
    assert demo.drive.ok == demo.drive.sent == fake.served > 0
    assert demo.drive.sent <= 40
    stats = {s.name: s for s in demo.stats}
    assert set(stats) == {"productpage-v1", "sleep"}
    row = stats["productpage-v1"]
    assert row.success_rate == 1.0 and row.rps is not None and row.rps > 0
    assert row.p50_ms is not None and 0 < row.p50_ms <= 10 and row.p99_ms is not None and row.p99_ms <= 10
    assert row.tls_rate == 1.0 and row.tcp_conn == 1
    assert stats["sleep"].success_rate is None
    table = render_table(demo.stats)
    assert "productpage-v1" in table and "100.00%" in table
    assert "mTLS: productpage-v1 100%" in summary(demo.drive, demo.stats)


async def test_drive_bounds_requests_and_counts_errors() -> None:
    result = await drive(DriveConfig(url="http://127.0.0.1:9/", duration_s=5, concurrency=3, max_requests=6))
    assert result.sent == 6 and result.ok == 0
    assert sum(v for k, v in result.statuses.items() if not k.isdigit()) == 6


def test_demo_cli_without_a_mesh_fails_clearly(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "meshlet.e2e.demo", "--state-dir", str(tmp_path / "none"),
                           "--duration", "1"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("demo: ") and "no local mesh" in proc.stderr


async def test_run_demo_names_the_missing_entry_pod() -> None:
    sleep = PodInfo("bookinfo", "sleep-abc12-q1w2e", "198.18.0.10", "Running", True, False, {"app": "sleep"})
    with pytest.raises(TargetError, match="app=productpage.*sleep-abc12-q1w2e"):
        await run_demo(FakeTarget([sleep], {}), namespace="bookinfo", service="productpage", port=9080,
                       path="/productpage", duration_s=0.1, concurrency=1, max_requests=1, wait_s=0)
