"""The store shared by several processes: a subprocess writes, this process watches; concurrent writers."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ctl_support import make_store, summary, take

WRITER = """
import asyncio, sys
from meshlet.controller.model import ObjectMeta, ServiceAccount
from meshlet.controller.store import SqliteStore

async def main(path, prefix, count):
    store = SqliteStore(path)
    try:
        for i in range(count):
            await store.apply([ServiceAccount(metadata=ObjectMeta(name=f"{prefix}{i}", namespace="default"))])
        await store.delete("sa", "default", f"{prefix}0")
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def run_writer(path: Path, prefix: str, count: int) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(path), prefix, str(count),
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()


async def test_watch_sees_writes_of_another_process(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = make_store(path)
    try:
        _, rv = await store.list("sa")
        events = store.watch({"ServiceAccount"}, since=rv)
        writer = asyncio.create_task(run_writer(path, "w", 3))
        got = await take(events, 4, timeout=60)
        await writer
        assert summary(got) == [("ADDED", "ServiceAccount", "w0"), ("ADDED", "ServiceAccount", "w1"),
                                ("ADDED", "ServiceAccount", "w2"), ("DELETED", "ServiceAccount", "w0")]
        await events.aclose()
    finally:
        await store.close()


async def test_concurrent_writers_get_distinct_versions(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = make_store(path)
    try:
        # the writers race to create the database, too
        await asyncio.gather(run_writer(path, "a", 15), run_writer(path, "b", 15), run_writer(path, "c", 15))
        events = store.watch({"sa"}, since=0)
        got = await take(events, 48, timeout=60)  # 3 x (15 adds + 1 delete)
        await events.aclose()
        versions = [e.resource_version for e in got]
        assert versions == sorted(set(versions))
        items, rv = await store.list("sa")
        assert len(items) == 42 and rv == versions[-1]
    finally:
        await store.close()
