"""gRPC through two proxies on a real local mesh, with retries on `unavailable` (issue 3's proof).

One mesh per module (its own state dir, bridge and ranges): the `flakygrpc` sample,
whose server fails every other call with UNAVAILABLE and whose caller makes the gRPC
calls (both meshed: the caller's proxy retries, the server's proxy terminates mTLS).
With a VirtualService saying `retries: {attempts: 0}` the caller sees the failures;
with `retries: {attempts: 3, retryOn: unavailable}` every call succeeds and the
caller's proxy counts the retries in `retry_total`. The same retries written on a root
VirtualService whose rule delegates to a hosts-less VirtualService (Istio's delegate)
reach the proxies merged into the delegate's rule.
"""
from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from meshlet.e2e.apps.flakygrpc import FLAKYGRPC_DIR, NAMESPACE
from meshlet.e2e.pods import PodInfo
from meshlet.e2e.scenarios.harness import (
    UP_TIMEOUT,
    mesh_unavailable_reason,
    new_local_target,
    poll,
    stop_local,
)
from meshlet.e2e.scenarios.traffic import APPLY_WAIT, Applied
from meshlet.e2e.target import LocalMeshTarget, wait_for_pods

pytestmark = [pytest.mark.root, pytest.mark.slow]

NO_RETRIES = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky}
spec:
  hosts: [flaky-svc]
  http:
  - route: [{destination: {host: flaky-svc}}]
    retries: {attempts: 0}
"""
RETRIES = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky}
spec:
  hosts: [flaky-svc]
  http:
  - route: [{destination: {host: flaky-svc}}]
    retries: {attempts: 3, retryOn: unavailable}
"""
DELEGATED = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky-routes}
spec:
  http:
  - name: list
    match: [{uri: {prefix: /emojivoto.v1.EmojiService/ListAll}}]
    route: [{destination: {host: flaky-svc}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky}
spec:
  hosts: [flaky-svc]
  http:
  - name: emoji
    match: [{uri: {prefix: /emojivoto.v1.EmojiService/}}]
    delegate: {name: flaky-routes}
    retries: {attempts: 3, retryOn: unavailable}
  - route: [{destination: {host: flaky-svc}}]
    retries: {attempts: 0}
"""


@dataclass
class FlakyMesh:
    target: LocalMeshTarget
    caller: PodInfo

    def batch(self, n: int) -> dict:
        """`n` gRPC calls made by the caller app (asked from the test host through the caller's inbound side)."""
        url = f"http://{self.target.pod_address(self.caller, 8080)}/call?n={n}"
        with urllib.request.urlopen(url, timeout=120) as resp:
            return json.loads(resp.read())

    def retries(self) -> float:
        """`retry_total` of the caller's proxy, all authorities."""
        url = f"http://{self.target.pod_address(self.caller, 15090)}/metrics"
        with urllib.request.urlopen(url, timeout=20) as resp:
            text = resp.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("retry_total{"))

    def profiles(self) -> str:
        """What the caller's proxy received from GetProfile (its /config_dump), as JSON text."""
        url = f"http://{self.target.pod_address(self.caller, 15000)}/config_dump"
        with urllib.request.urlopen(url, timeout=20) as resp:
            return json.dumps(json.loads(resp.read())["profiles"])


@pytest.fixture(scope="module")
def mesh() -> Iterator[FlakyMesh]:
    reason = mesh_unavailable_reason()
    if reason:
        pytest.skip(reason)
    target = new_local_target()
    try:
        target.run(["up", "-f", str(FLAKYGRPC_DIR), "--timeout", str(int(UP_TIMEOUT))])
        pods = wait_for_pods(target, NAMESPACE, expect=2, timeout=UP_TIMEOUT)
        assert all(p.meshed for p in pods), pods
        caller = next(p for p in pods if p.labels.get("app") == "caller")
        flaky = FlakyMesh(target, caller)
        poll(lambda: True if flaky.batch(2)["ok"] >= 1 else None, timeout=90, what="gRPC calls through the mesh")
        yield flaky
    finally:
        stop_local(target)


def failures(result: dict) -> int:
    return sum(result["errors"].values())


def test_without_retries_the_caller_sees_unavailable(mesh: FlakyMesh) -> None:
    with Applied(mesh.target, NO_RETRIES, NAMESPACE):
        poll(lambda: True if failures(mesh.batch(4)) else None, timeout=APPLY_WAIT, what="retries switched off")
        result = mesh.batch(20)
    assert result["errors"].keys() == {"UNAVAILABLE"}, result
    assert 8 <= result["errors"]["UNAVAILABLE"] <= 12 and result["ok"] + failures(result) == 20, result


def test_retries_on_unavailable_turn_every_call_into_a_success(mesh: FlakyMesh) -> None:
    with Applied(mesh.target, RETRIES, NAMESPACE):
        poll(lambda: True if mesh.batch(10) == {"ok": 10, "errors": {}} else None, timeout=APPLY_WAIT,
             what="retries on unavailable to take effect")
        before = mesh.retries()
        result = mesh.batch(20)
        after = mesh.retries()
    assert result == {"ok": 20, "errors": {}}, result
    # the server alternates: each call's first try fails and its one retry succeeds (the very first
    # of the batch may find the server's turn to succeed), all counted by the caller's proxy
    assert 19 <= after - before <= 20, (before, after)


def test_retries_of_a_root_rule_reach_its_delegate(mesh: FlakyMesh) -> None:
    with Applied(mesh.target, DELEGATED, NAMESPACE):
        poll(lambda: True if mesh.batch(10) == {"ok": 10, "errors": {}} else None, timeout=APPLY_WAIT,
             what="the delegate's route with the root's retries")
        before = mesh.retries()
        result = mesh.batch(20)
        after = mesh.retries()
        profiles = mesh.profiles()
    assert result == {"ok": 20, "errors": {}}, result
    assert 19 <= after - before <= 20, (before, after)
    assert '"emoji-list"' in profiles, profiles  # the root rule's name joined with the delegate rule's
