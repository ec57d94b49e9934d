"""Random operation sequences against the real store, checked against a plain dict model.

After any sequence: `list` equals the model, and replaying the change log
(`watch(since=0)`) from nothing rebuilds exactly the listed state.
"""
from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from ctl_support import make_store, ns, pod, svc
from hypothesis import given, settings
from hypothesis import strategies as st

from meshlet.controller.model import PodStatus, Resource, to_obj
from meshlet.controller.store import Action, EventType, Invalid, NotFound, SqliteStore

NAMES = ["a", "b", "c"]
NAMESPACES = ["default", "team"]

ops = st.lists(st.one_of(
    st.tuples(st.just("apply_svc"), st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.integers(80, 82)),
    st.tuples(st.just("apply_pod"), st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.just(0)),
    st.tuples(st.just("status"), st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.booleans()),
    st.tuples(st.just("delete_svc"), st.sampled_from(NAMES), st.sampled_from(NAMESPACES), st.just(0)),
    st.tuples(st.just("create_ns"), st.just("team"), st.just(""), st.just(0)),
    st.tuples(st.just("delete_ns"), st.just("team"), st.just(""), st.just(0)),
), max_size=25)


def comparable(resources: list[Resource]) -> dict[tuple[str, str, str], object]:
    return {r.key: to_obj(r) for r in resources}


async def run_ops(store: SqliteStore, sequence: list[tuple[str, str, str, object]]) -> None:
    model: dict[tuple[str, str, str], int] = {}  # key -> port (services) or 0 (pods); what should exist
    namespaces = {"default"}
    for op, name, namespace, arg in sequence:
        if op in ("apply_svc", "apply_pod"):
            obj = svc(name, namespace, port=int(arg)) if op == "apply_svc" else pod(name, namespace)  # type: ignore[call-overload]
            try:
                (result,) = await store.apply([obj])
            except Invalid:
                assert namespace not in namespaces
                continue
            assert namespace in namespaces
            existed = obj.key in model
            assert result.action in ((Action.CONFIGURED, Action.UNCHANGED) if existed else (Action.CREATED,))
            model[obj.key] = int(arg)  # type: ignore[call-overload]
        elif op == "status":
            try:
                await store.update_status(pod(name, namespace).with_status(PodStatus(ready=bool(arg))))
                assert ("Pod", namespace, name) in model
            except NotFound:
                assert ("Pod", namespace, name) not in model
        elif op == "delete_svc":
            assert await store.delete("svc", namespace, name) == (("Service", namespace, name) in model)
            model.pop(("Service", namespace, name), None)
        elif op == "create_ns":
            await store.apply([ns(name)])
            namespaces.add(name)
        elif op == "delete_ns":
            assert await store.delete("ns", None, name) == (name in namespaces)
            namespaces.discard(name)
            model = {k: v for k, v in model.items() if k[1] != name}

    listed: list[Resource] = []
    for kind in ("Service", "Pod"):
        items, _ = await store.list(kind)
        listed += items
    assert {r.key for r in listed} == set(model)
    for r in listed:
        if r.kind == "Service":
            assert r.spec.ports[0].port == model[r.key]

    replay: dict[tuple[str, str, str], Resource] = {}
    rv = await store.resource_version()
    events = store.watch(None, since=0)  # every kind, so the last change (of any kind) ends the replay
    async for ev in events:
        if ev.type is EventType.DELETED:
            del replay[ev.resource.key]
        else:
            replay[ev.resource.key] = ev.resource
        if ev.resource_version >= rv:
            break
    await events.aclose()
    replayed = [r for r in replay.values() if r.kind in ("Service", "Pod")]
    assert comparable(replayed) == comparable(listed)


@settings(max_examples=40, deadline=None)
@given(sequence=ops)
def test_store_matches_a_model(sequence: list[tuple[str, str, str, object]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async def main() -> None:
            store = make_store(Path(tmp) / "s.db")
            try:
                await asyncio.wait_for(run_ops(store, sequence), 120)
            finally:
                await store.close()
        asyncio.run(main())
