"""ServiceEntry endpoints, outbound traffic policy and Sidecar scope through the endpoints watcher (pure)."""
import asyncio

import pytest
import structlog

pytest.importorskip("meshlet.controller.model.istio_networking")

from dst_helpers import TD, Recorder, pod, service
from dst_profile_helpers import World, resources
from meshlet.controller.model import ManifestError
from meshlet.destination.dns import DnsCache
from meshlet.destination.lookup import CallerRef
from meshlet.destination.targets import parse_path
from meshlet.destination.translator import add_update
from meshlet.destination.watcher import (
    BLOCKED,
    EndpointsWatcher,
    NoEndpoints,
    transition,
)

ENTRIES = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static}
spec:
  hosts: [api.example.com]
  addresses: [192.0.2.0/24]
  ports: [{number: 443, name: https, protocol: TLS, targetPort: 9443}]
  resolution: STATIC
  endpoints:
  - {address: 203.0.113.10, labels: {version: v1}}
  - {address: 203.0.113.11, ports: {https: 8443}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns}
spec:
  hosts: [db.example.com]
  ports: [{number: 3306, name: tcp, protocol: TCP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns-endpoints}
spec:
  hosts: [cache.example.com]
  ports: [{number: 6379, name: redis, protocol: TCP}]
  resolution: DNS
  endpoints: [{address: cache-a.internal}, {address: cache-b.internal}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: passthrough}
spec:
  hosts: ["*.wild.example"]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: private, namespace: other}
spec:
  hosts: [private.example.com]
  exportTo: ["."]
  resolution: STATIC
  endpoints: [{address: 203.0.113.20}]
"""

DNS = {"db.example.com": ("198.51.100.5", "198.51.100.6"), "cache-a.internal": ("10.1.0.1",),
       "cache-b.internal": ("10.1.0.2",)}


class FakeDns:
    def __init__(self, answers):
        self.answers = answers

    def lookup(self, name):
        return self.answers.get(name)


def watcher(text="", services=(), pods=(), dns=DNS):
    w = EndpointsWatcher(trust_domain=TD, log=structlog.get_logger())
    w.dns = FakeDns(dict(dns))
    loaded = resources(text) if text.strip() else []
    by_kind = {}
    for r in loaded:
        by_kind.setdefault(r.kind, []).append(r)
    w.load(list(services), list(pods), by_kind)
    return w


def state(w, path, ns="shop", **caller):
    s = w.resolve(parse_path(path, ns), CallerRef(ns, **caller))
    if s is None or s is BLOCKED:
        return s
    return sorted((a.ip, a.port, dict(a.labels).get("version")) for a in s.addresses.values())


def test_service_entry_resolutions():
    w = watcher(ENTRIES)
    assert state(w, "api.example.com:443") == [("203.0.113.10", 9443, "v1"), ("203.0.113.11", 8443, None)]
    assert state(w, "db.example.com:3306") == [("198.51.100.5", 3306, None), ("198.51.100.6", 3306, None)]
    assert state(w, "cache.example.com:6379") == [("10.1.0.1", 6379, None), ("10.1.0.2", 6379, None)]
    assert state(w, "x.wild.example:443") is None          # NONE: pass through
    assert state(w, "api.example.com:80") is None          # not one of the entry's ports
    assert state(w, "private.example.com:80") is None       # exportTo "." of another namespace
    assert state(w, "private.example.com:80", "other") == [("203.0.113.20", 80, None)]
    # by IP: the entry's addresses, static endpoints and resolved names
    assert state(w, "192.0.2.7:443") == state(w, "api.example.com:443")
    assert state(w, "198.51.100.6:3306") == state(w, "db.example.com:3306")


def test_service_entry_endpoints_have_labels_and_no_identity_on_the_wire():
    w = watcher(ENTRIES)
    s = w.resolve(parse_path("api.example.com:443", "shop"), CallerRef("shop"))
    update = add_update(s)
    assert [(a.addr.ip, dict(a.labels), a.tls_identity) for a in update.add.addrs] == [
        ("203.0.113.10", {"version": "v1"}, None), ("203.0.113.11", {}, None)]
    assert dict(update.add.metric_labels) == {"dst_service": "api.example.com", "dst_namespace": "shop"}


def test_pending_dns_answer_is_an_existing_service_without_endpoints():
    w = watcher(ENTRIES, dns={})
    r = Recorder()
    w.subscribe(parse_path("db.example.com:3306"), r, CallerRef("shop"))
    assert r.take() == [("none", True)]
    w.dns.answers["db.example.com"] = ("198.51.100.5",)
    w.publish()
    assert r.take() == [("add", ["198.51.100.5:3306"])]


MESH_REGISTRY_ONLY = """
apiVersion: meshlet.io/v1alpha1
kind: MeshConfig
metadata: {name: default}
spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
"""


def test_registry_only_blocks_unknown_targets_until_an_entry_exists():
    w = watcher(MESH_REGISTRY_ONLY, services=[service("web")], pods=[pod("web-0", "198.18.0.10")])
    r = Recorder()
    w.subscribe(parse_path("api.example.com:443"), r, CallerRef("shop"))
    assert r.take() == [("blocked", False)]
    assert state(w, "203.0.113.99:443") is BLOCKED
    assert state(w, "web:80") == [("198.18.0.10", 80, None)]    # Services stay reachable
    assert state(w, "198.18.0.10:8080") == [("198.18.0.10", 8080, None)]  # pod IPs too
    for se in resources(ENTRIES):
        w.apply("ADDED", se)
    w.publish()
    assert r.take() == [("add", ["203.0.113.10:9443", "203.0.113.11:8443"])]
    w.apply("DELETED", resources(MESH_REGISTRY_ONLY)[0])
    for se in resources(ENTRIES):
        w.apply("DELETED", se)
    w.publish()
    assert r.take() == [("remove", ["203.0.113.10:9443", "203.0.113.11:8443"]), ("none", False)]


def test_blocked_transitions():
    assert transition(None, BLOCKED) == [NoEndpoints(False, blocked=True)]
    assert transition(BLOCKED, None) == [NoEndpoints(False)]
    assert transition(BLOCKED, BLOCKED) == []




def _selector_key() -> str:
    """Istio spells a Sidecar's workload selector `labels`; the model used `matchLabels` for a while."""
    try:
        resources("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: probe}\n"
                  "spec: {workloadSelector: {labels: {app: x}}}\n")
    except ManifestError:
        return "matchLabels"
    return "labels"


SELECTOR = _selector_key()

SIDECARS = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: ["./*", "istio-system/*", "*/api.example.com"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: strict, namespace: shop}
spec:
  workloadSelector: {SELECTOR: {app: locked}}
  egress: [{hosts: ["~/*"]}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
""".replace("SELECTOR", SELECTOR)


def test_sidecar_egress_scope_and_its_outbound_policy():
    w = watcher(ENTRIES + "---\n" + SIDECARS,
                services=[service("web"), service("db", ns="data"), service("mon", ns="istio-system")],
                pods=[pod("web-0", "198.18.0.10"), pod("db-0", "198.18.0.11", ns="data", app="db"),
                      pod("locked-0", "198.18.0.12", app="locked")])
    assert state(w, "web:80") == [("198.18.0.10", 80, None)]          # ./*
    assert state(w, "db.data:80") is None                             # out of scope: as if unknown (ALLOW_ANY)
    assert state(w, "mon.istio-system:80") == []                      # istio-system/* (no pods)
    assert state(w, "api.example.com:443") is not None                # */api.example.com
    assert state(w, "db.example.com:3306") is not None                # ./*: entries of shop too
    assert state(w, "db.data:80", "data") == [("198.18.0.11", 80, None)]  # no Sidecar in "data"
    # the workload-selected Sidecar: nothing in scope, REGISTRY_ONLY
    assert state(w, "web:80", pod="locked-0") is BLOCKED
    assert state(w, "web:80", labels=(("app", "locked"),)) is BLOCKED


async def test_dns_cache_resolves_in_a_thread_and_reports_changes():
    answers = {"a.test": ("10.0.0.1",)}
    changes = []
    cache = DnsCache(on_change=lambda: changes.append(dict(cache.addresses())), log=structlog.get_logger(),
                     refresh=0.05, resolver=lambda name: answers.get(name, ()))
    task = asyncio.create_task(cache.run())
    try:
        assert cache.lookup("A.test.") is None  # pending
        for _ in range(500):
            if changes:
                break
            await asyncio.sleep(0.01)
        assert cache.lookup("a.test") == ("10.0.0.1",)
        answers["a.test"] = ("10.0.0.2",)
        for _ in range(500):
            cache.lookup("a.test")  # still in use: kept and refreshed
            if cache.lookup("a.test") == ("10.0.0.2",):
                break
            await asyncio.sleep(0.01)
        assert cache.lookup("a.test") == ("10.0.0.2",) and len(changes) >= 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_profiles_of_entries_and_out_of_scope_targets():
    world = World(ENTRIES + "---\n" + SIDECARS, services=[service("db", ns="data")])
    p = world.profile("api.example.com:443")
    assert p.fully_qualified_name == "api.example.com" and p.opaque_protocol
    assert [b.authority for b in p.routes[0].backends] == ["api.example.com:443"]
    assert world.profile("db.data:80").fully_qualified_name == ""  # outside the caller's Sidecar scope
    assert world.profile("db.data:80", "data").fully_qualified_name == "db.data.svc.cluster.local"


def test_egress_task_service_entry_with_a_virtual_service():
    text = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin-ext}
spec:
  hosts: [httpbin.org]
  ports: [{number: 80, name: http-port, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin-ext}
spec:
  hosts: [httpbin.org]
  http: [{timeout: 3s, route: [{destination: {host: httpbin.org}, weight: 100}]}]
"""
    world = World(text, dns={"httpbin.org": ("192.0.2.80",)})
    p = world.profile("httpbin.org:80")  # two labels: parsed like svc.ns, still found as the entry's host
    assert p.fully_qualified_name == "httpbin.org" and not p.opaque_protocol
    (route,) = p.routes
    assert (route.timeout_ms, [b.authority for b in route.backends]) == (3000, ["httpbin.org:80"])
    w = watcher(text, dns={"httpbin.org": ("192.0.2.80",)})
    assert state(w, "httpbin.org:80") == [("192.0.2.80", 80, None)]
    assert state(w, "192.0.2.80:80") == [("192.0.2.80", 80, None)]


async def test_dns_name_asked_for_during_a_resolution_is_not_left_for_the_next_refresh():
    import threading

    started, release = threading.Event(), threading.Event()

    def resolver(name):
        if name == "slow.test":
            started.set()
            release.wait(30)
        return ("10.0.0.9",)

    cache = DnsCache(on_change=lambda: None, log=structlog.get_logger(), refresh=3600, resolver=resolver)
    task = asyncio.create_task(cache.run())
    try:
        cache.lookup("slow.test")
        assert await asyncio.to_thread(started.wait, 30)
        cache.lookup("next.test")
        release.set()
        for _ in range(3000):
            if cache.lookup("next.test") is not None:
                break
            await asyncio.sleep(0.01)
        assert cache.lookup("next.test") == ("10.0.0.9",)
    finally:
        release.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_mesh_internal_entry_with_a_workload_selector_selects_pods():
    text = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy}
spec:
  hosts: [legacy.internal]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http, targetPort: 8080}]
  resolution: STATIC
  workloadSelector: {SELECTOR: {app: legacy}}
""".replace("SELECTOR", SELECTOR)
    w = watcher(text, pods=[pod("legacy-0", "198.18.0.40", app="legacy"), pod("other", "198.18.0.41", app="other"),
                            pod("legacy-1", "198.18.0.42", app="legacy", ready=False)])
    s = w.resolve(parse_path("legacy.internal:80", "shop"), CallerRef("shop"))
    (address,) = s.addresses.values()
    assert (address.ip, address.port, address.identity) == ("198.18.0.40", 8080, "spiffe://cluster.local/ns/shop/sa/web")


def test_entries_for_one_host_on_different_ports():
    text = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api-https}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: 203.0.113.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api-http}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 203.0.113.2}]
"""
    w = watcher(text)
    assert state(w, "api.example.com:443") == [("203.0.113.1", 443, None)]
    assert state(w, "api.example.com:80") == [("203.0.113.2", 80, None)]
    assert state(w, "api.example.com:8080") is None
