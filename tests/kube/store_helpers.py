"""Helpers of the Kubernetes store tests: open a KubeStore on the test API server, collect a
watch's events, and a loopback TCP relay whose connections a test can cut (a dropped watch)."""
from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from meshlet.controller.store import WatchEvent
from meshlet.controller.store.kube import KubeStore, KubeStoreConfig
from meshlet.e2e.kubeapi import KubeAPIServer


@asynccontextmanager
async def kube_store(api: KubeAPIServer, kubeconfig: Path | None = None, **cfg: Any) -> AsyncIterator[KubeStore]:
    store = await KubeStore.connect(KubeStoreConfig(kubeconfig=kubeconfig or api.kubeconfig, **cfg))
    try:
        yield store
    finally:
        await store.close()


class RecordingLog:
    """A structlog-like logger that keeps (event, fields) for assertions."""

    def __init__(self, records: list[tuple[str, dict[str, Any]]] | None = None, **bound: Any) -> None:
        self.records = records if records is not None else []
        self._bound = bound

    def bind(self, **fields: Any) -> RecordingLog:
        return RecordingLog(self.records, **{**self._bound, **fields})

    def _log(self, event: str, **fields: Any) -> None:
        self.records.append((event, {**self._bound, **fields}))

    debug = info = warning = error = _log


class Collector:
    """Runs `store.watch(...)` in a task and keeps its events (or the error that ended it)."""

    def __init__(self, store: KubeStore, kinds: set[str] | None = None, since: int | None = None,
                 namespace: str | None = None) -> None:
        self.events: list[WatchEvent] = []
        self.error: BaseException | None = None
        self._namespace = namespace
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(store, kinds, since))

    async def _run(self, store: KubeStore, kinds: set[str] | None, since: int | None) -> None:
        try:
            async for event in store.watch(kinds, since=since):
                if self._namespace is None or event.resource.metadata.namespace in (self._namespace, None):
                    self.events.append(event)
                    self._changed.set()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - kept for the test to assert on
            self.error = e
            self._changed.set()

    def brief(self) -> list[tuple[str, str, str]]:
        return [(e.type.value, e.resource.kind, e.resource.metadata.name) for e in self.events]

    async def wait_for(self, predicate: Callable[[list[WatchEvent]], bool], timeout: float = 60.0,
                       what: str = "events") -> list[WatchEvent]:
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            if self.error is not None:
                raise AssertionError(f"the watch ended with {self.error!r}; events: {self.brief()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; events so far: {self.brief()}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
        return self.events

    async def wait_error(self, timeout: float = 60.0) -> BaseException:
        await asyncio.wait_for(asyncio.shield(self._task), timeout)
        assert self.error is not None
        return self.error

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def seen(events: list[WatchEvent], type_: str, kind: str, name: str) -> bool:
    return any(e.type.value == type_ and e.resource.kind == kind and e.resource.metadata.name == name
               for e in events)


class Relay:
    """A loopback TCP relay to the API server; `cut()` drops every connection through it (bytes
    are passed through untouched: TLS is end to end, the API server's certificate names 127.0.0.1)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = asyncio.Event()
        self._open.set()

    def hold(self) -> None:
        """New connections wait (accepted, not forwarded) until `release()`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await self._open.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})
        pipes = [asyncio.create_task(self._pipe(reader, up_writer)), asyncio.create_task(self._pipe(up_reader, writer))]
        self._tasks.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._writers.difference_update({writer, up_writer})
            self._tasks.difference_update(pipes)

    def cut(self) -> int:
        """Abort every open connection; returns how many there were."""
        writers = list(self._writers)
        for w in writers:
            transport = w.transport
            if transport is not None:
                transport.abort()
        return len(writers)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def compact_etcd(api: KubeAPIServer) -> int:
    """Compact the test API server's etcd up to its current revision (what kube-apiserver itself does
    every 5 minutes), so watches from older versions get 410 Gone; returns that revision."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{api.etcd_url}/v3/kv/range", json={"key": "AA=="}) as resp:
            revision = int((await resp.json())["header"]["revision"])
        async with session.post(f"{api.etcd_url}/v3/kv/compaction",
                                json={"revision": str(revision), "physical": True}) as resp:
            assert resp.status == 200, await resp.text()
    return revision


def kubeconfig_via(api: KubeAPIServer, port: int, path: Path) -> Path:
    """A copy of the admin kubeconfig whose server is 127.0.0.1:`port` (a Relay)."""
    text = api.kubeconfig.read_text()
    path.write_text(re.sub(r"server: https://127\.0\.0\.1:\d+", f"server: https://127.0.0.1:{port}", text))
    return path
