"""SqliteStore through a real SQLite file: apply semantics, atomicity, watch, compaction, restart, clusterIPs."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from ctl_support import make_store, ns, pod, summary, svc, take
from meshlet.controller.model import ObjectMeta, PodStatus, Service, ServiceAccount
from meshlet.controller.store import (
    Action,
    Conflict,
    EventType,
    Gone,
    Invalid,
    NotFound,
    SqliteStore,
    Store,
    StoreError,
)


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = make_store(tmp_path / "store.db")
    yield s
    await s.close()


def test_sqlite_store_fits_the_protocol(tmp_path: Path) -> None:
    assert isinstance(SqliteStore(tmp_path / "x.db"), Store)


async def test_create_update_unchanged(store: SqliteStore) -> None:
    (r,) = await store.apply([svc("a")])
    assert r.action is Action.CREATED
    meta = r.resource.metadata
    assert meta.generation == 1 and meta.uid and meta.creation_timestamp and meta.resource_version > 0

    (r2,) = await store.apply([svc("a")])
    assert r2.action is Action.UNCHANGED and r2.resource.metadata.resource_version == meta.resource_version

    (r3,) = await store.apply([svc("a", port=81)])
    assert r3.action is Action.CONFIGURED
    m3 = r3.resource.metadata
    assert m3.generation == 2 and m3.uid == meta.uid and m3.creation_timestamp == meta.creation_timestamp
    assert m3.resource_version > meta.resource_version

    labelled = svc("a", port=81).with_meta(labels={"team": "x"})
    (r4,) = await store.apply([labelled])
    assert r4.action is Action.CONFIGURED and r4.resource.metadata.generation == 2  # metadata only

    got = await store.get("svc", "default", "a")
    assert got == r4.resource
    assert await store.get("Service", None, "a") == r4.resource  # None namespace = default
    assert await store.get(Service, "other", "a") is None


async def test_apply_is_all_or_nothing(store: SqliteStore) -> None:
    _, rv_before = await store.list("Service")
    with pytest.raises(Invalid) as e:
        await store.apply([svc("a"), svc("b", namespace="nowhere"), svc("c", namespace="elsewhere")])
    assert e.value.problems == [
        "service/b: namespace 'nowhere' not found (create it, or apply its Namespace in the same request)",
        "service/c: namespace 'elsewhere' not found (create it, or apply its Namespace in the same request)",
    ]
    items, rv_after = await store.list("Service")
    assert items == [] and rv_after == rv_before

    # a failure discovered inside the transaction (clusterIP taken) also leaves nothing behind
    await store.apply([svc("x", ip="198.19.0.50")])
    with pytest.raises(Invalid, match="already allocated"):
        await store.apply([ns("team"), svc("y", "team"), svc("z", ip="198.19.0.50")])
    assert await store.get("Namespace", None, "team") is None
    assert await store.get("Service", "team", "y") is None


async def test_namespace_in_same_request_is_fine(store: SqliteStore) -> None:
    results = await store.apply([svc("a", "bookinfo"), ns("bookinfo")])
    assert [r.action for r in results] == [Action.CREATED, Action.CREATED]


async def test_invalid_objects_are_refused_with_every_problem(store: SqliteStore) -> None:
    bad_name = svc("a").with_meta(name="Not_Valid")
    no_containers = replace(pod("p"), spec=replace(pod("p").spec, containers=()))
    with pytest.raises(Invalid) as e:
        await store.apply([bad_name, no_containers])
    assert len(e.value.problems) == 2
    assert "service/Not_Valid: metadata.name: name 'Not_Valid' is invalid" in e.value.problems[0]
    assert e.value.problems[1] == "pod/p: spec.containers: at least one container is required"


async def test_conflict_on_stale_resource_version(store: SqliteStore) -> None:
    (r,) = await store.apply([svc("a")])
    await store.apply([svc("a", port=81)])
    with pytest.raises(Conflict, match="stale"):
        await store.apply([replace(r.resource, spec=replace(r.resource.spec, ports=()))])


async def test_update_status_keeps_generation_and_apply_keeps_status(store: SqliteStore) -> None:
    (r,) = await store.apply([pod("p")])
    status = PodStatus(phase="Running", pod_ip="198.18.0.7", ready=True)
    updated = await store.update_status(r.resource.with_status(status))
    assert updated.status == status
    assert updated.metadata.generation == 1 and updated.metadata.resource_version > r.resource.metadata.resource_version
    assert await store.update_status(updated) == updated  # no change, no new version
    (again,) = await store.apply([pod("p")])  # manifests carry no status: the stored one stays
    assert again.action is Action.UNCHANGED and again.resource.status == status
    with pytest.raises(NotFound):
        await store.update_status(pod("ghost").with_status(status))
    with pytest.raises(Invalid, match="status.phase: must be one of"):
        await store.update_status(updated.with_status(PodStatus(phase="Sleeping")))  # type: ignore[arg-type]
    with pytest.raises(Conflict):
        await store.update_status(r.resource.with_status(PodStatus(phase="Failed")))


async def test_delete_and_namespace_cascade(store: SqliteStore) -> None:
    await store.apply([ns("bookinfo"), svc("a", "bookinfo"), pod("p", "bookinfo"), svc("keep")])
    assert await store.delete("svc", "bookinfo", "a") is True
    assert await store.delete("svc", "bookinfo", "a") is False
    assert await store.delete("ns", None, "bookinfo") is True
    assert (await store.list("Pod"))[0] == []
    assert [s.metadata.name for s in (await store.list("Service"))[0]] == ["keep"]


async def test_list_filters_and_sorts(store: SqliteStore) -> None:
    await store.apply([ns("b"), svc("z"), svc("a"), svc("m", "b")])
    items, rv = await store.list("Service")
    assert [(i.metadata.namespace, i.metadata.name) for i in items] == [("b", "m"), ("default", "a"), ("default", "z")]
    assert rv == max(i.metadata.resource_version for i in items)
    assert [i.metadata.name for i in (await store.list("Service", "b"))[0]] == ["m"]
    names = [n.metadata.name for n in (await store.list("Namespace"))[0]]
    assert names == ["b", "default"]  # the default namespace exists from the start


async def test_watch_snapshot_then_changes(store: SqliteStore) -> None:
    await store.apply([svc("a"), pod("p")])
    events = store.watch({"Service"})
    snapshot = await take(events, 1)
    assert summary(snapshot) == [("ADDED", "Service", "a")]
    await store.apply([svc("b"), pod("q")])  # the pod is filtered out
    await store.apply([svc("a", port=99)])
    await store.apply([svc("a", port=99)])  # unchanged: no event
    await store.delete("svc", None, "b")
    changes = await take(events, 3)
    assert summary(changes) == [("ADDED", "Service", "b"), ("MODIFIED", "Service", "a"), ("DELETED", "Service", "b")]
    assert changes[1].resource.spec.ports[0].port == 99
    assert [e.resource_version for e in changes] == sorted(e.resource_version for e in changes)
    assert changes[2].resource_version > changes[2].resource.metadata.resource_version - 1
    await events.aclose()


async def test_watch_since_resumes_after_a_version(store: SqliteStore) -> None:
    (a,) = await store.apply([svc("a")])
    await store.apply([svc("b")])
    await store.apply([svc("c")])
    events = store.watch({"svc"}, since=a.resource.metadata.resource_version)
    assert summary(await take(events, 2)) == [("ADDED", "Service", "b"), ("ADDED", "Service", "c")]
    await events.aclose()

    # resuming from a snapshot event's version skips exactly the snapshot
    events = store.watch({"Service"})
    first = await take(events, 3)
    await events.aclose()
    events = store.watch({"Service"}, since=first[-1].resource_version)
    await store.apply([svc("d")])
    assert summary(await take(events, 1)) == [("ADDED", "Service", "d")]
    await events.aclose()


async def test_watch_gone_after_compaction(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.db", log_retention=5)
    try:
        (first,) = await store.apply([svc("s0")])
        for i in range(1, 12):
            await store.apply([svc(f"s{i}")])
        with pytest.raises(Gone):
            await take(store.watch({"Service"}, since=first.resource.metadata.resource_version), 1)
        await store.compact(keep=0)
        _, rv = await store.list("Service")
        events = store.watch({"Service"}, since=rv)  # the current version is never too old
        await store.apply([svc("new")])
        assert summary(await take(events, 1)) == [("ADDED", "Service", "new")]
        await events.aclose()
        with pytest.raises(Gone, match="newer than the store"):
            await take(store.watch(None, since=rv + 1000), 1)
    finally:
        await store.close()


async def test_state_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = make_store(path)
    (a,) = await first.apply([svc("a")])
    await first.close()
    second = make_store(path)
    try:
        assert await second.get("Service", "default", "a") == a.resource
        (b,) = await second.apply([svc("b")])
        assert b.resource.metadata.resource_version > a.resource.metadata.resource_version
        assert b.resource.spec.cluster_ip != a.resource.spec.cluster_ip
        events = second.watch({"Service"}, since=a.resource.metadata.resource_version)
        assert summary(await take(events, 1)) == [("ADDED", "Service", "b")]
        await events.aclose()
    finally:
        await second.close()


async def test_cluster_ips_are_unique_stable_and_validated(store: SqliteStore) -> None:
    results = await store.apply([svc(f"s{i}") for i in range(5)])
    ips = [r.resource.spec.cluster_ip for r in results]
    assert ips == ["198.19.0.2", "198.19.0.3", "198.19.0.4", "198.19.0.5", "198.19.0.6"]
    (again,) = await store.apply([svc("s1", port=8080)])  # update: the address stays
    assert again.action is Action.CONFIGURED and again.resource.spec.cluster_ip == "198.19.0.3"
    with pytest.raises(Invalid, match="field is immutable"):
        await store.apply([svc("s1", ip="198.19.9.9")])
    await store.delete("svc", None, "s0")
    (reused,) = await store.apply([svc("t")])
    assert reused.resource.spec.cluster_ip == "198.19.0.2"
    (chosen,) = await store.apply([svc("u", ip="198.19.7.7")])
    assert chosen.resource.spec.cluster_ip == "198.19.7.7"
    for bad, why in [("10.0.0.1", "not an allocatable address"), ("198.19.0.1", "not an allocatable address"),
                     ("nonsense", "not an IPv4 address"), ("198.19.7.7", "already allocated")]:
        with pytest.raises(Invalid, match=why):
            await store.apply([svc("v", ip=bad)])
    (headless,) = await store.apply([svc("h", ip="None")])
    assert headless.resource.spec.cluster_ip == "None"


async def test_cluster_scoped_kinds_ignore_namespace(store: SqliteStore) -> None:
    (r,) = await store.apply([ns("x").with_meta(namespace="ignored")])
    assert r.resource.metadata.namespace is None
    assert await store.get("ns", "whatever", "x") == r.resource


async def test_store_concurrent_use_from_one_loop(store: SqliteStore) -> None:
    sa = [ServiceAccount(metadata=ObjectMeta(name=f"sa{i}")) for i in range(20)]
    results = await asyncio.gather(*(store.apply([a]) for a in sa))
    rvs = sorted(r[0].resource.metadata.resource_version for r in results)
    assert len(set(rvs)) == 20
    events = store.watch({"sa"})
    assert {e.type for e in await take(events, 20)} == {EventType.ADDED}
    await events.aclose()


async def test_own_writes_wake_watchers_without_waiting_for_the_poll(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.db", poll_interval=3600)  # polling alone would never deliver in time
    try:
        events = store.watch({"Service"})
        waiter = asyncio.ensure_future(take(events, 1, timeout=20))
        await asyncio.sleep(0)
        await store.apply([svc("a")])
        assert summary(await waiter) == [("ADDED", "Service", "a")]
        await events.aclose()
    finally:
        await store.close()


async def test_rows_written_by_another_meshlet_version(tmp_path: Path) -> None:
    """Unknown fields in stored rows are ignored; rows this version cannot read give a StoreError naming them."""
    import json
    import sqlite3

    store = make_store(tmp_path / "s.db")
    try:
        (r,) = await store.apply([svc("a")])
        conn = sqlite3.connect(tmp_path / "s.db")
        body = json.loads(conn.execute("SELECT body FROM resources WHERE name = 'a'").fetchone()[0])
        body["spec"]["futureField"] = {"x": 1}
        body["metadata"]["name"] = "A_not_valid_any_more"  # validation rules may have changed since
        conn.execute("UPDATE resources SET body = ? WHERE name = 'a'", (json.dumps(body),))
        conn.commit()
        got = await store.get("Service", "default", "a")
        assert got is not None and got.spec == r.resource.spec
        body["spec"]["ports"] = "not a list"
        conn.execute("UPDATE resources SET body = ? WHERE name = 'a'", (json.dumps(body),))
        conn.commit()
        conn.close()
        with pytest.raises(StoreError, match="stored Service default/A_not_valid_any_more cannot be read"):
            await store.list("Service")
    finally:
        await store.close()
