"""The proxy's destination client (`proxy/dstclient.py`) against a real gRPC server on loopback.

One channel carries both kinds of streams, a stream comes back after the server
restarts (the last value kept meanwhile), targets are evicted past the limit, and a
proxy following more targets than one channel may carry opens a second one.
"""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import structlog
from grpclib.server import Server
from meshlet.api import destination_pb as pb
from meshlet.proxy import dstclient
from meshlet.proxy.config import ProxyConfig
from meshlet.proxy.endpoints import Kind
from meshlet.proxy.metrics import ProxyMetrics
from meshlet.proxy.profiles import Profiles
from meshlet.proxy.resolve import Resolver

WAIT = 30.0
HERE = Path(__file__).resolve().parent


class Destination(pb.DestinationBase):
    """Answers every Get with one endpoint and every GetProfile with one route, then keeps the stream open."""

    def __init__(self) -> None:
        self.contexts: list[tuple[str, str, dict[str, str]]] = []
        self.peers: set[tuple[str, int]] = set()
        self.open = 0

    async def get(self, message: pb.GetDestination):  # type: ignore[override]
        self.contexts.append(("get", message.path, dict(message.context.labels)))
        yield pb.Update(add=pb.WeightedAddrSet(addrs=[pb.WeightedAddr(
            addr=pb.TcpAddress(ip="10.0.0.1", port=80), weight=1)]))
        await self._hold()

    async def get_profile(self, message: pb.GetDestination):  # type: ignore[override]
        self.contexts.append(("profile", message.path, dict(message.context.labels)))
        yield pb.DestinationProfile(fully_qualified_name=message.path, routes=[
            pb.Route(name="r", backends=[pb.WeightedDst(authority=message.path, weight=100)])])
        await self._hold()

    async def _hold(self) -> None:
        self.open += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.open -= 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def serve(service: Destination, port: int) -> Server:
    server = Server([service])
    await server.start("127.0.0.1", port)
    return server


def config(port: int, **kw) -> ProxyConfig:
    return ProxyConfig(destination_addr=("127.0.0.1", port), namespace="shop", pod="web-0",
                       pod_labels={"app": "web"}, **kw)


async def test_one_channel_for_both_kinds_of_streams() -> None:
    port = free_port()
    service = Destination()
    server = await serve(service, port)
    cfg, log = config(port), structlog.get_logger()
    client = dstclient.DestinationClient.from_config(cfg)
    resolver, profiles = Resolver(cfg, ProxyMetrics("shop", "web-0"), log, client), Profiles(cfg, log, client)
    try:
        t, p = resolver.get("svc:80"), profiles.get("svc:80")
        assert await t.wait(WAIT) and await p.wait(WAIT)
        assert t.state.kind is Kind.ENDPOINTS and p.profile.routes[0].name == "r"
        assert client.channels == 1 and service.open == 2
        # the profile stream carries the pod's labels (for workload-selected rules); discovery does not
        assert sorted(service.contexts) == [("get", "svc:80", {}), ("profile", "svc:80", {"app": "web"})]
    finally:
        await resolver.close()
        await profiles.close()
        client.close()
        server.close()
        await server.wait_closed()


FIXTURE = {"svc:80": {"exists": True, "endpoints": [{"ip": "10.0.0.1", "port": 80}]}}
PROFILES = {"svc:80": {"routes": [{"name": "r", "backends": [{"authority": "svc:80", "weight": 100}]}]}}


def start_destination(port: int, tmp_path: Path) -> subprocess.Popen[str]:
    (tmp_path / "fixture.json").write_text(json.dumps(FIXTURE))
    (tmp_path / "profiles.json").write_text(json.dumps(PROFILES))
    proc = subprocess.Popen([sys.executable, str(HERE / "fake_destination.py"), "127.0.0.1", str(port),
                             str(tmp_path / "fixture.json"), str(tmp_path / "profiles.json")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "destination ready"
    return proc


async def test_streams_come_back_after_destination_restarts_keeping_the_last_values(tmp_path: Path) -> None:
    port = free_port()
    proc = start_destination(port, tmp_path)
    cfg, log = config(port), structlog.get_logger()
    metrics = ProxyMetrics("shop", "web-0")
    client = dstclient.DestinationClient.from_config(cfg)
    resolver, profiles = Resolver(cfg, metrics, log, client), Profiles(cfg, log, client)
    try:
        t, p = resolver.get("svc:80"), profiles.get("svc:80")
        await until(lambda: t.connected and p.connected, "both streams")
        proc.kill()
        proc.wait(timeout=WAIT)
        await until(lambda: not t.connected and not p.connected, "both streams to notice the restart")
        assert t.state.kind is Kind.ENDPOINTS and p.profile.routes[0].name == "r"  # last values kept
        proc = start_destination(port, tmp_path)
        await until(lambda: t.connected and p.connected, "both streams back")
        assert client.channels == 1 and p.version >= 2
        assert metrics.registry.get_sample_value("destination_stream_reconnect_total",
                                                 {"namespace": "shop", "pod": "web-0"}) == 1
    finally:
        await resolver.close()
        await profiles.close()
        client.close()
        proc.kill()
        proc.wait(timeout=WAIT)


async def test_targets_past_one_channel_open_another_and_evictions_end_streams(monkeypatch) -> None:
    monkeypatch.setattr(dstclient, "STREAMS_PER_CHANNEL", 3)
    port = free_port()
    service = Destination()
    server = await serve(service, port)
    cfg = config(port, max_targets=5)
    client = dstclient.DestinationClient.from_config(cfg)
    profiles = Profiles(cfg, structlog.get_logger(), client)
    try:
        targets = [profiles.get(f"svc-{i}:80") for i in range(5)]
        for t in targets:
            assert await t.wait(WAIT)
        assert client.channels == 2 and service.open == 5
        profiles.get("svc-5:80")  # the sixth: the least recently used one is evicted
        await until(lambda: service.open == 5 and len(profiles.items()) == 5, "the evicted stream to end")
        assert "svc-0:80" not in dict(profiles.items())
    finally:
        await profiles.close()
        client.close()
        server.close()
        await server.wait_closed()


async def test_without_a_control_plane_targets_settle_at_once() -> None:
    cfg, log = ProxyConfig(), structlog.get_logger()
    resolver, profiles = Resolver(cfg, ProxyMetrics("", ""), log), Profiles(cfg, log)
    t, p = resolver.get("svc:80"), profiles.get("svc:80")
    assert t.answered.is_set() and p.answered.is_set() and t.task is None and p.task is None
    assert t.state.kind is Kind.PASSTHROUGH and p.profile.routes == ()
    await resolver.close()
    await profiles.close()
