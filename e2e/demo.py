"""Demo traffic driver: load productpage for a few seconds, then print `linkerd viz stat`-style numbers.

Run after `meshlet up -f e2e/apps/bookinfo/`:

    python -m meshlet.e2e.demo --state-dir /var/lib/meshlet --duration 5

or against a cluster (`--target kube`, or MESHLET_E2E_TARGET=kube as for the scenarios).

It lists the namespace's pods through the `meshlet` CLI, scrapes every meshed
pod's proxy metrics (<podIP>:15090/metrics), sends a bounded number of
`GET /productpage` from the host to the productpage pod (entering that pod's
inbound proxy) with bounded concurrency, scrapes again and prints one row per
Deployment from the inbound deltas.
"""
from __future__ import annotations

import asyncio
import collections
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import click
from meshlet.e2e.pods import PodInfo, group_by_workload
from meshlet.e2e.stats import (
    MetricsParseError,
    ProxyCounters,
    WorkloadStat,
    delta,
    inbound_counters,
    merge,
    parse_samples,
    render_table,
    workload_stat,
)
from meshlet.e2e.target import (
    TARGET_ENV,
    TARGET_KINDS,
    LocalTargetSettings,
    MeshTarget,
    TargetError,
    make_target,
)

METRICS_PORT = 15090


@dataclass(frozen=True)
class DriveConfig:
    url: str
    duration_s: float = 5.0
    concurrency: int = 4
    max_requests: int = 2000
    request_timeout_s: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DriveResult:
    sent: int
    statuses: Mapping[str, int]
    """HTTP status (as text) or an error class name -> count."""
    elapsed_s: float

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)


async def drive(config: DriveConfig) -> DriveResult:
    """Send at most `max_requests` GETs over `concurrency` workers until `duration_s` passes."""
    statuses: collections.Counter[str] = collections.Counter()
    budget = config.max_requests
    start = time.monotonic()
    deadline = start + config.duration_s
    timeout = aiohttp.ClientTimeout(total=config.request_timeout_s)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal budget
        while time.monotonic() < deadline and budget > 0:
            budget -= 1
            try:
                async with session.get(config.url, headers=dict(config.headers)) as resp:
                    await resp.read()
                    statuses[str(resp.status)] += 1
            except (TimeoutError, aiohttp.ClientError) as exc:
                statuses[type(exc).__name__] += 1

    connector = aiohttp.TCPConnector(limit=config.concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(max(1, config.concurrency))))
    return DriveResult(sent=sum(statuses.values()), statuses=dict(statuses), elapsed_s=time.monotonic() - start)


async def scrape(session: aiohttp.ClientSession, url: str) -> ProxyCounters | None:
    """Inbound counters of one proxy, None when it cannot be scraped or parsed."""
    try:
        async with session.get(url) as resp:
            if resp.status != 200:
                return None
            text = await resp.text()
    except (TimeoutError, aiohttp.ClientError):
        return None
    try:
        return inbound_counters(parse_samples(text))
    except MetricsParseError:
        return None


async def scrape_all(target: MeshTarget, pods: Sequence[PodInfo]) -> dict[str, ProxyCounters | None]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        urls = [f"http://{target.pod_address(p, METRICS_PORT)}/metrics" for p in pods]
        results = await asyncio.gather(*(scrape(session, u) for u in urls))
    return {p.key: r for p, r in zip(pods, results)}


def collect_stats(
    groups: Mapping[str, Sequence[PodInfo]],
    before: Mapping[str, ProxyCounters | None],
    after: Mapping[str, ProxyCounters | None],
    seconds: float,
) -> list[WorkloadStat]:
    """One row per workload from the scrapes taken `seconds` apart (pods missing a scrape are skipped)."""
    stats = []
    for name, pods in groups.items():
        meshed = [p for p in pods if p.meshed]
        windows = []
        for pod in meshed:
            b, a = before.get(pod.key), after.get(pod.key)
            if b is not None and a is not None:
                windows.append(delta(b, a))
        window = merge(windows) if windows else None
        stats.append(workload_stat(name, meshed=len(meshed), pods=len(pods), window=window, seconds=seconds))
    return stats


def summary(result: DriveResult, stats: Sequence[WorkloadStat]) -> str:
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items())) or "none"
    rate = result.sent / result.elapsed_s if result.elapsed_s else 0.0
    lines = [f"traffic: {result.sent} requests in {result.elapsed_s:.1f}s ({rate:.1f} rps; {codes})"]
    tls = [f"{s.name} {s.tls_rate * 100:.0f}%" for s in sorted(stats, key=lambda s: s.name) if s.tls_rate is not None]
    if tls:
        lines.append("inbound requests over mTLS: " + ", ".join(tls))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DemoResult:
    drive: DriveResult
    stats: list[WorkloadStat]


async def settled_pods(target: MeshTarget, namespace: str, wait_s: float, interval: float = 1.0) -> list[PodInfo]:
    """The namespace's pods once all are ready with an address, or as they are after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        pods = await asyncio.to_thread(target.pods, namespace)
        if (pods and all(p.ready and p.ip for p in pods)) or time.monotonic() >= deadline:
            return pods
        await asyncio.sleep(interval)


async def run_demo(target: MeshTarget, *, namespace: str, service: str, port: int, path: str,
                   duration_s: float, concurrency: int, max_requests: int, wait_s: float) -> DemoResult:
    pods = await settled_pods(target, namespace, wait_s)
    entry = [p for p in pods if p.labels.get("app") == service and p.ready and p.ip]
    if not entry:
        raise TargetError(f"no ready pod with label app={service} in namespace {namespace} after {wait_s:.0f}s "
                          f"(pods: {', '.join(p.name for p in pods) or 'none'})")
    deployments = await asyncio.to_thread(target.deployments, namespace)
    groups = group_by_workload(pods, deployments)
    meshed = [p for p in pods if p.meshed and p.ip]
    before = await scrape_all(target, meshed)
    t0 = time.monotonic()
    url = f"http://{target.pod_address(entry[0], port)}{path}"
    result = await drive(DriveConfig(url=url, duration_s=duration_s, concurrency=concurrency,
                                     max_requests=max_requests))
    after = await scrape_all(target, meshed)
    seconds = time.monotonic() - t0
    return DemoResult(drive=result, stats=collect_stats(groups, before, after, seconds))


@click.command()
@click.option("--target", "target_kind", type=click.Choice(TARGET_KINDS), envvar=TARGET_ENV, default="local",
              show_default=True, help="Mesh to drive: local (--state-dir) or kube (MESHLET_E2E_KUBECONFIG, else "
              "KUBECONFIG, else ~/.kube/config; the host must reach pod IPs).")
@click.option("--state-dir", envvar="MESHLET_STATE_DIR", type=click.Path(path_type=Path),
              default=Path("/var/lib/meshlet"), show_default=True, help="State directory of the local mesh.")
@click.option("--namespace", "-n", default="bookinfo", show_default=True)
@click.option("--service", default="productpage", show_default=True, help="`app` label of the pod to load.")
@click.option("--port", default=9080, show_default=True)
@click.option("--path", default="/productpage", show_default=True)
@click.option("--duration", default=5.0, show_default=True, help="Seconds of traffic.")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--max-requests", default=2000, show_default=True, type=click.IntRange(1, 100000))
@click.option("--wait", "wait_s", default=120.0, show_default=True, help="Seconds to wait for pods to be ready.")
def main(target_kind: str, state_dir: Path, namespace: str, service: str, port: int, path: str, duration: float,
         concurrency: int, max_requests: int, wait_s: float) -> None:
    """Drive traffic to Bookinfo's productpage and print per-workload stats."""
    if target_kind == "kube":
        from meshlet.e2e.kubetarget import KubeTargetSettings
        target = make_target(KubeTargetSettings.from_env())
    else:
        target = make_target(LocalTargetSettings(state_dir=state_dir))
    try:
        demo = asyncio.run(run_demo(target, namespace=namespace, service=service, port=port, path=path,
                                    duration_s=duration, concurrency=concurrency, max_requests=max_requests,
                                    wait_s=wait_s))
    except TargetError as exc:
        click.echo(f"demo: {exc}", err=True)
        sys.exit(1)
    click.echo(render_table(demo.stats), nl=False)
    click.echo()
    click.echo(summary(demo.drive, demo.stats), nl=False)
    if demo.drive.ok == 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
