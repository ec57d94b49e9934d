"""Real path: `python -m meshlet.destination` on a real SqliteStore, GetProfile and Get over real gRPC.

Resources are written to the store as `meshlet apply` does; the tests wait for what must arrive
(never for a time).
"""
import asyncio
import json
import subprocess
import sys
import time

import betterproto2
import pytest
from cp_process import Proc
from dst_helpers import pod, service
from dst_profile_helpers import manifests as resources
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status
from meshlet.api import destination_pb as pb
from meshlet.controller.model import Namespace, ObjectMeta
from meshlet.controller.store import SqliteStore

WAIT = 30.0

VS = """
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews-route}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""

EVERYONE_V2 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-route}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v2}}]}]
"""

SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 443, name: https, protocol: TLS}]
  endpoints:
  - {address: 203.0.113.10, labels: {zone: a}}
  - {address: 203.0.113.11, ports: {https: 8443}}
"""

REGISTRY_ONLY = """
apiVersion: meshlet.io/v1alpha1
kind: MeshConfig
metadata: {name: default}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""


@pytest.fixture
async def mesh(tmp_path):
    store = SqliteStore(tmp_path / "store.db")
    await store.apply([Namespace(metadata=ObjectMeta(name="shop"))])
    proc = Proc("meshlet.destination", ["--state-dir", str(tmp_path)], tmp_path / "destination.log")
    try:
        await proc.wait_ready()
        channel = Channel("127.0.0.1", proc.port)
        try:
            yield proc, store, pb.DestinationStub(channel)
        finally:
            channel.close()
    finally:
        await store.close()
        assert proc.stop() == 0, proc.output()


async def until(stream, predicate, what):
    """Read messages until one satisfies `predicate` (changes reach the service a poll or two later)."""
    seen = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        msg = await asyncio.wait_for(stream.__anext__(), WAIT)
        if predicate(msg):
            return msg
        seen.append(msg)
    raise AssertionError(f"never got {what}; got {seen}")


def subsets(profile):
    return [b.subset for r in profile.routes for b in r.backends]


async def test_profile_stream_follows_virtual_service_changes(mesh):
    proc, store, stub = mesh
    await store.apply([service("reviews", port=9080, cluster_ip="198.19.0.9"),
                       pod("reviews-v1", "198.18.0.21", app="reviews", labels={"version": "v1"})])
    stream = stub.get_profile(pb.GetDestination(path="reviews:9080", context=pb.CallerContext(namespace="shop")),
                              timeout=120)
    first = await until(stream, lambda p: p.fully_qualified_name == "reviews.shop.svc.cluster.local", "the service")
    assert [r.name for r in first.routes] == ["default"] and first.routes[0].retry.attempts == 2

    await store.apply(resources(VS))
    routed = await until(stream, lambda p: len(p.routes) == 2, "the VirtualService's routes")
    assert subsets(routed) == ["v2", "v1"]
    assert [dict(b.subset_labels) for r in routed.routes for b in r.backends] == [{"version": "v2"}, {"version": "v1"}]
    assert [s.name for s in routed.subsets] == ["v1", "v2"]

    # change the rule: everyone to v2
    await store.apply(resources(EVERYONE_V2))
    changed = await until(stream, lambda p: len(p.routes) == 1 and subsets(p) == ["v2"], "the changed rule")
    assert changed.routes[0].matches == []

    # the same profile by VIP, then the rule deleted: back to the default route
    by_vip = stub.get_profile(pb.GetDestination(path="198.19.0.9:9080", context=pb.CallerContext(namespace="shop")),
                              timeout=120)
    assert subsets(await until(by_vip, lambda p: bool(p.routes), "a profile by VIP")) == ["v2"]
    await by_vip.aclose()
    await store.delete("VirtualService", "shop", "reviews-route")
    await until(stream, lambda p: [r.name for r in p.routes] == ["default"], "the default route again")
    await stream.aclose()
    assert "profile.failed" not in proc.output()
    # the admin debug views tell the same
    status, body = await asyncio.to_thread(proc.get, "/debug/profile?path=reviews:9080&ns=shop")
    assert status == 200 and json.loads(body)["routes"][0]["name"] == "default"
    status, body = await asyncio.to_thread(proc.get, "/debug/endpoints?path=reviews.shop:9080")
    assert status == 200 and [e["ip"] for e in json.loads(body)["endpoints"]] == ["198.18.0.21"]
    status, body = await asyncio.to_thread(proc.get, "/debug/profile?path=reviews:x")
    assert status == 400 and "port 'x'" in body


def endpoints(update):
    name, value = betterproto2.which_one_of(update, "update")
    if name == "no_endpoints":
        return ("blocked" if value.blocked else "none", value.exists)
    if name == "remove":
        return name, sorted((a.ip, a.port) for a in value.addrs)
    return name, sorted((a.addr.ip, a.addr.port, tuple(sorted(a.labels.items())), a.tls_identity is None)
                        for a in value.addrs)


async def test_service_entry_endpoints_and_registry_only(mesh):
    _, store, stub = mesh
    ctx = pb.CallerContext(namespace="shop")
    await store.apply(resources(REGISTRY_ONLY))
    unknown = stub.get(pb.GetDestination(path="api.example.com:443", context=ctx), timeout=120)
    assert endpoints(await until(unknown, lambda u: endpoints(u)[0] == "blocked", "blocked")) == ("blocked", False)

    await store.apply(resources(SE))
    added = await until(unknown, lambda u: endpoints(u)[0] == "add", "the entry's endpoints")
    assert endpoints(added) == ("add", [("203.0.113.10", 443, (("zone", "a"),), True),
                                        ("203.0.113.11", 8443, (), True)])
    await unknown.aclose()

    # an unrelated host stays blocked; with ALLOW_ANY it passes through
    other = stub.get(pb.GetDestination(path="other.example.com:443", context=ctx), timeout=120)
    assert endpoints(await asyncio.wait_for(other.__anext__(), WAIT)) == ("blocked", False)
    await store.delete("MeshConfig", None, "default")
    assert endpoints(await until(other, lambda u: endpoints(u)[0] == "none", "pass through")) == ("none", False)
    await other.aclose()

    profile = await asyncio.wait_for(
        stub.get_profile(pb.GetDestination(path="api.example.com:443", context=ctx), timeout=WAIT).__anext__(), WAIT)
    assert profile.fully_qualified_name == "api.example.com" and profile.opaque_protocol

    with pytest.raises(GRPCError) as e:
        await asyncio.wait_for(stub.get_profile(pb.GetDestination(path="api:https"), timeout=WAIT).__anext__(), WAIT)
    assert e.value.status is Status.INVALID_ARGUMENT and "port 'https'" in e.value.message


def meshlet(state_dir, *args, input=None):
    """The real CLI, as a user runs it."""
    cmd = [sys.executable, "-c", "from meshlet.controller.cli.main import main; main()", "--state-dir", str(state_dir),
           *args]
    done = subprocess.run(cmd, check=False, input=input, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


HTTP_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-split, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - backendRefs: [{name: echo-v1, port: 80, weight: 90}, {name: echo-v2, port: 80, weight: 10}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: shop}
spec:
  host: echo
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
"""

SIDECAR = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: ["istio-system/*"]}]
"""


async def test_meshlet_apply_reaches_profile_and_endpoint_streams(mesh, tmp_path):
    _, store, stub = mesh
    await store.apply([service("echo"), service("echo-v1"), service("echo-v2"), pod("echo-0", "198.18.0.30", app="echo")])
    ctx = pb.CallerContext(namespace="shop")
    profiles = stub.get_profile(pb.GetDestination(path="echo:80", context=ctx), timeout=120)
    await until(profiles, lambda p: [r.name for r in p.routes] == ["default"], "the default route")
    get = stub.get(pb.GetDestination(path="echo:80", context=ctx), timeout=120)
    assert endpoints(await until(get, lambda u: endpoints(u)[0] == "add", "endpoints"))[1][0][:2] == ("198.18.0.30", 80)

    meshlet(tmp_path, "apply", "-f", "-", input=HTTP_ROUTE)
    routed = await until(profiles, lambda p: p.traffic_policy is not None and p.routes[0].name == "echo-split.0",
                         "the HTTPRoute and the DestinationRule")
    assert [(b.authority, b.weight) for b in routed.routes[0].backends] == [
        ("echo-v1.shop.svc.cluster.local:80", 90), ("echo-v2.shop.svc.cluster.local:80", 10)]
    assert routed.traffic_policy.load_balancer.policy.name == "ROUND_ROBIN"

    # a Sidecar that leaves echo out of shop's scope: not in the registry any more (ALLOW_ANY: pass through)
    meshlet(tmp_path, "apply", "-f", "-", input=SIDECAR)
    await until(profiles, lambda p: p.fully_qualified_name == "" and not p.routes, "an empty profile")
    await until(get, lambda u: endpoints(u) == ("none", False), "not a mesh service")
    meshlet(tmp_path, "delete", "sidecar", "default", "-n", "shop")
    await until(profiles, lambda p: p.fully_qualified_name == "echo.shop.svc.cluster.local", "echo again")
    await until(get, lambda u: endpoints(u)[0] == "add", "endpoints again")
    await profiles.aclose()
    await get.aclose()


DELEGATE_ROOT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-root}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /api}}]
    delegate: {name: reviews-api}
  - route: [{destination: {host: reviews, subset: v1}}]
"""

DELEGATE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-api}
spec:
  http:
  - match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: reviews, subset: v2}}]
"""


async def test_delegate_virtual_service_applied_through_the_cli_reaches_the_stream(mesh, tmp_path):
    proc, store, stub = mesh
    await store.apply([service("reviews", port=9080), pod("reviews-v1", "198.18.0.21", app="reviews")])
    meshlet(tmp_path, "apply", "-n", "shop", "-f", "-", input=DELEGATE_ROOT + "---\n" + VS.split("---\n")[1])
    stream = stub.get_profile(pb.GetDestination(path="reviews:9080", context=pb.CallerContext(namespace="shop")),
                              timeout=120)
    # the delegate does not exist yet: its rule is skipped, the rest applies
    await until(stream, lambda p: [r.name for r in p.routes] == ["reviews-root.1"], "the root without its delegate")
    meshlet(tmp_path, "apply", "-n", "shop", "-f", "-", input=DELEGATE)
    merged = await until(stream, lambda p: len(p.routes) == 2, "the delegate's rule merged in")
    first = merged.routes[0]
    assert first.name == "reviews-api.0" and [m.path.prefix for m in first.matches] == ["/api/v2"]
    assert subsets(merged) == ["v2", "v1"]
    meshlet(tmp_path, "delete", "-n", "shop", "virtualservice", "reviews-api")
    await until(stream, lambda p: [r.name for r in p.routes] == ["reviews-root.1"], "the delegate's rule gone")
    await stream.aclose()


SCOPED = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec: {host: reviews, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-canary-clients}
spec:
  host: reviews
  workloadSelector: {matchLabels: {track: canary}}
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["./reviews.shop.svc.cluster.local"]
"""


async def test_profile_differs_by_client_pod_and_sidecar_egress_port(mesh):
    _, store, stub = mesh
    await store.apply([service("reviews", port=9080), pod("reviews-v1", "198.18.0.21", app="reviews"),
                       pod("pp-canary", "198.18.0.30", app="productpage", labels={"track": "canary"}),
                       pod("pp-stable", "198.18.0.31", app="productpage", labels={"track": "stable"})])
    await store.apply(resources(SCOPED))

    def lb(p):
        return p.traffic_policy.load_balancer.policy.name if p.traffic_policy else ""

    async def policy_of(ctx):
        stream = stub.get_profile(pb.GetDestination(path="reviews:9080", context=ctx), timeout=120)
        try:
            return lb(await until(stream, lambda p: bool(lb(p)), "a traffic policy"))
        finally:
            await stream.aclose()

    # the proxy sends its pod's labels; without them destination reads the caller's Pod
    assert await policy_of(pb.CallerContext(namespace="shop", pod="x", labels={"track": "canary"})) == "RANDOM"
    assert await policy_of(pb.CallerContext(namespace="shop", pod="pp-canary")) == "RANDOM"
    assert await policy_of(pb.CallerContext(namespace="shop", pod="pp-stable")) == "ROUND_ROBIN"

    # the Sidecar's egress listener lists reviews on 9080 only: on another port it is not in the registry
    ctx = pb.CallerContext(namespace="shop", pod="pp-stable")
    on_port = stub.get(pb.GetDestination(path="reviews.shop.svc.cluster.local:9080", context=ctx), timeout=120)
    assert endpoints(await until(on_port, lambda u: endpoints(u)[0] == "add", "endpoints")) == (
        "add", [("198.18.0.21", 9080, (("app", "reviews"),), False)])
    await on_port.aclose()
    other = stub.get(pb.GetDestination(path="reviews.shop.svc.cluster.local:9090", context=ctx), timeout=120)
    assert endpoints(await until(other, lambda u: endpoints(u)[0] == "none", "not in scope")) == ("none", False)
    await store.delete("Sidecar", "shop", "default")  # no Sidecar: the service on any port
    await until(other, lambda u: endpoints(u) != ("none", False), "the service once the Sidecar is gone")
    await other.aclose()
