"""Real path: `python -m meshlet.destination` over real gRPC, following a real SqliteStore."""
import asyncio
import dataclasses
import re
import time
from typing import Self

import betterproto2
import h2.exceptions
import pytest
from cp_process import Proc
from dst_helpers import pod, service
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Cardinality, Status
from grpclib.exceptions import StreamTerminatedError
from meshlet.api import destination_pb as pb
from meshlet.controller.model import Namespace, ObjectMeta
from meshlet.controller.store import SqliteStore

GET = "/meshlet.destination.v1.Destination/Get"
WAIT = 30.0


def kind(update: pb.Update) -> tuple[str, object]:
    name, value = betterproto2.which_one_of(update, "update")
    if name == "no_endpoints":
        return name, value.exists
    addrs = value.addrs
    return name, sorted(f"{a.addr.ip}:{a.addr.port}" if name == "add" else f"{a.ip}:{a.port}" for a in addrs)


class Watch:
    """One Get stream opened with the low-level grpclib API (so the test decides when to read)."""

    def __init__(self, channel: Channel, path: str, namespace: str = "") -> None:
        self._cm = channel.request(GET, Cardinality.UNARY_STREAM, pb.GetDestination, pb.Update, timeout=120)
        self._path, self._ns = path, namespace

    async def __aenter__(self) -> Self:
        self.stream = await self._cm.__aenter__()
        await self.stream.send_message(
            pb.GetDestination(path=self._path, context=pb.CallerContext(namespace=self._ns)), end=True)
        return self

    async def __aexit__(self, *exc) -> None:
        # The server may have ended the stream already (overflow test): that is fine here.
        ended = (h2.exceptions.StreamClosedError, StreamTerminatedError)
        try:
            await self.stream.cancel()
        except ended:
            pass
        try:
            await self._cm.__aexit__(*exc)
        except ended:
            pass
        except GRPCError as e:
            if e.status is not Status.RESOURCE_EXHAUSTED:
                raise

    async def until(self, expected: tuple[str, object]) -> pb.Update:
        """Skip messages until one matches: the service may see the store's last change a poll later."""
        seen = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            msg = await self.next()
            if kind(msg) == expected:
                return msg
            seen.append(kind(msg))
        raise AssertionError(f"never got {expected}; got {seen}")

    async def next(self) -> pb.Update:
        msg = await asyncio.wait_for(self.stream.recv_message(), WAIT)
        assert msg is not None, "stream ended"
        return msg


@pytest.fixture
async def mesh(tmp_path, request):
    capacity = getattr(request, "param", 100)
    store = SqliteStore(tmp_path / "store.db")
    await store.apply([Namespace(metadata=ObjectMeta(name="shop"))])
    proc = Proc("meshlet.destination", ["--state-dir", str(tmp_path), "--stream-queue-capacity", str(capacity)],
                tmp_path / "destination.log")
    try:
        await proc.wait_ready()
        channel = Channel("127.0.0.1", proc.port, config=Configuration(
            http2_connection_window_size=65535, http2_stream_window_size=65535))
        try:
            yield proc, store, channel
        finally:
            channel.close()
    finally:
        await store.close()
        assert proc.stop() == 0, proc.output()


async def set_ready(store, ns, name, ready):
    current = await store.get("Pod", ns, name)
    await store.update_status(dataclasses.replace(current, status=dataclasses.replace(current.status, ready=ready)))


async def test_get_streams_snapshot_then_diffs(mesh):
    _, store, channel = mesh
    await store.apply([
        service("web", target_port="http", cluster_ip="198.19.0.5"),
        service("empty", selector={"app": "nothing"}),
        pod("web-0", "198.18.0.10", labels={"version": "v1"}),
        pod("web-1", "198.18.0.11", ready=False, meshed=False),
    ])
    async with Watch(channel, "web.shop.svc.cluster.local:80") as w:
        first = await w.until(("add", ["198.18.0.10:8080"]))
        (addr,) = first.add.addrs
        assert addr.tls_identity.uri == "spiffe://cluster.local/ns/shop/sa/web"
        assert addr.metric_labels == {"pod": "web-0", "namespace": "shop", "serviceaccount": "web",
                                      "app": "web", "version": "v1"}
        assert first.add.metric_labels == {"dst_service": "web", "dst_namespace": "shop"}

        await set_ready(store, "shop", "web-1", True)
        update = await w.next()
        assert kind(update) == ("add", ["198.18.0.11:8080"])
        assert update.add.addrs[0].tls_identity is None  # not meshed: plaintext

        await store.delete("Pod", "shop", "web-0")
        assert kind(await w.next()) == ("remove", ["198.18.0.10:8080"])

        # other path forms, resolved while the first stream stays open
        async with Watch(channel, "198.19.0.5:80") as vip:
            assert kind(await vip.next()) == ("add", ["198.18.0.11:8080"])
        async with Watch(channel, "web", namespace="shop") as short:
            assert kind(await short.next()) == ("add", ["198.18.0.11:8080"])
        async with Watch(channel, "198.18.0.11:8080") as by_pod_ip:
            assert kind(await by_pod_ip.next()) == ("add", ["198.18.0.11:8080"])
        async with Watch(channel, "nope.shop:80") as unknown:
            assert kind(await unknown.next()) == ("no_endpoints", False)
        async with Watch(channel, "203.0.113.7:443") as outside:
            assert kind(await outside.next()) == ("no_endpoints", False)
        async with Watch(channel, "empty.shop:80") as empty:
            assert kind(await empty.next()) == ("no_endpoints", True)

        await store.delete("Service", "shop", "web")
        assert kind(await w.next()) == ("remove", ["198.18.0.11:8080"])
        assert kind(await w.next()) == ("no_endpoints", False)

    stub = pb.DestinationStub(channel)
    with pytest.raises(GRPCError) as e:
        async for _ in stub.get(pb.GetDestination(path="web:http"), timeout=WAIT):
            pass
    assert e.value.status is Status.INVALID_ARGUMENT and "port 'http'" in e.value.message

    profiles = stub.get_profile(pb.GetDestination(path="web.shop:80"), timeout=WAIT)
    profile = await profiles.__anext__()
    # web was deleted above: not a mesh service, so no routes (test_dst_profile_process covers the rest)
    assert profile.fully_qualified_name == "" and profile.routes == []
    await profiles.aclose()


@pytest.mark.parametrize("mesh", [2], indirect=True)
async def test_slow_consumer_is_disconnected(mesh):
    proc, store, channel = mesh
    # Big endpoints (long names) so that one update exceeds the client's 64 KiB window.
    sa = "s" * 200
    pods = [pod(f"big-{i:03d}-" + "p" * 200, f"198.18.1.{i + 1}", app="big", sa=sa) for i in range(80)]
    await store.apply([service("big", selector={"app": "none"}), *pods])
    async with Watch(channel, "big.shop:80") as w:
        await w.until(("no_endpoints", True))
        # Stop reading. One huge add fills the window, then small changes fill the queue (capacity 2).
        await store.apply([service("big", selector={"app": "big"})])
        deadline = time.monotonic() + 60
        overflowed = False
        i = 0
        while not overflowed and time.monotonic() < deadline:
            await set_ready(store, "shop", pods[i % len(pods)].metadata.name, i // len(pods) % 2 == 1)
            i += 1
            _, metrics = await asyncio.to_thread(proc.get, "/metrics")
            overflowed = re.search(r"^endpoint_updates_queue_overflow_total 1\.0$", metrics, re.MULTILINE) is not None
        assert overflowed, proc.output()
        # Reading again: what was buffered, then the stream ends: with RESOURCE_EXHAUSTED when the
        # message in flight could be finished, else (client stuck past the grace time) with RST_STREAM.
        received = []
        with pytest.raises((GRPCError, StreamTerminatedError)) as e:
            while (msg := await asyncio.wait_for(w.stream.recv_message(), WAIT)) is not None:
                received.append(kind(msg)[0])
            await asyncio.wait_for(w.stream.recv_trailing_metadata(), WAIT)
        if isinstance(e.value, GRPCError):
            assert e.value.status is Status.RESOURCE_EXHAUSTED, (received, e.value)
    assert "get.overflow" in proc.output()
    _, metrics = await asyncio.to_thread(proc.get, "/metrics")
    assert "destination_get_streams 0.0" in metrics
