"""Parsing pod listings and naming workloads."""
from __future__ import annotations

import json

import pytest
from meshlet.e2e.pods import (
    PodInfo,
    PodListError,
    group_by_workload,
    parse_pods,
    workload_of,
)


def pod_obj(name: str, **kw: object) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "bookinfo", "labels": kw.get("labels", {"app": "x"}),
                     "annotations": kw.get("annotations", {}), **kw.get("meta", {})},
        "status": {"podIP": kw.get("ip", "198.18.0.5"), "phase": "Running", **kw.get("status", {})},
    }


def test_parse_list_shapes() -> None:
    items = [pod_obj("a", annotations={"meshlet.io/proxy": "injected"}, status={"ready": True}),
             pod_obj("b", status={"conditions": [{"type": "Ready", "status": "False"}]})]
    for text in (json.dumps({"kind": "List", "items": items}), json.dumps(items)):
        a, b = parse_pods(text)
        assert (a.name, a.ip, a.ready, a.meshed) == ("a", "198.18.0.5", True, True)
        assert (b.ready, b.meshed) == (False, False)
    assert [p.name for p in parse_pods(json.dumps(items[0]))] == ["a"]


def test_parse_errors_are_clear() -> None:
    with pytest.raises(PodListError, match="not JSON"):
        parse_pods("nope")
    with pytest.raises(PodListError, match="metadata.name"):
        parse_pods(json.dumps([{"metadata": {}}]))


def info(name: str, **kw: object) -> PodInfo:
    return PodInfo(namespace="ns", name=name, ip="", phase="", ready=True, meshed=False, **kw)  # type: ignore[arg-type]


def test_workload_names() -> None:
    assert workload_of(info("reviews-v2-5d8f7b9c4-x7k2p"), ["reviews-v1", "reviews-v2", "reviews"]) == "reviews-v2"
    assert workload_of(info("reviews-v2-5d8f7b9c4-x7k2p")) == "reviews-v2"
    assert workload_of(info("details-v1-0")) == "details-v1-0"  # too short to be a generated suffix
    assert workload_of(info("p-abc12345-1", labels={"pod-template-hash": "abc12345"})) == "p"
    assert workload_of(info("x-1", owner="productpage-v1")) == "productpage-v1"
    rs_owned = parse_pods(json.dumps([pod_obj("whatever", meta={"ownerReferences": [
        {"kind": "ReplicaSet", "name": "ratings-v1-7dc98c7588"}]})]))[0]
    assert workload_of(rs_owned) == "ratings-v1"


def test_group_by_workload() -> None:
    groups = group_by_workload([info("sleep-abc12-1a2b3"), info("sleep-abc12-9z8y7"), info("ratings-v1-1a2b3c")],
                               ["sleep", "ratings-v1"])
    assert {k: len(v) for k, v in groups.items()} == {"sleep": 2, "ratings-v1": 1}


def test_local_runtime_deployment_annotation() -> None:
    pod = parse_pods(json.dumps([pod_obj("reviews-v2-0", annotations={"meshlet.io/deployment": "reviews-v2"})]))[0]
    assert workload_of(pod) == "reviews-v2"


def test_parse_names() -> None:
    from meshlet.e2e.pods import parse_names
    assert parse_names(json.dumps({"items": [{"metadata": {"name": "a"}}, {"metadata": {}}]})) == ["a"]
    with pytest.raises(PodListError):
        parse_names("{")
