import asyncio
import dataclasses
import itertools

import structlog
from dst_helpers import TD, Recorder, pod, service
from hypothesis import given
from hypothesis import strategies as st
from meshlet.destination.address import Address, AddressSet
from meshlet.destination.targets import ExternalTarget, IpTarget, ServiceTarget
from meshlet.destination.watcher import (
    Add,
    EndpointsWatcher,
    NoEndpoints,
    Remove,
    transition,
)

WEB = ServiceTarget("shop", "web", 80)


def _watcher(services=(), pods=()):
    w = EndpointsWatcher(trust_domain=TD, log=structlog.get_logger())
    w.load(list(services), list(pods))
    return w


def test_transition_table():
    a, b = Address("10.0.0.1", 80), Address("10.0.0.2", 80)
    one, two, empty = AddressSet.of([a]), AddressSet.of([a, b]), AddressSet()
    assert transition(None, None) == []
    assert transition(None, empty) == [NoEndpoints(True)]
    assert transition(empty, None) == [NoEndpoints(False)]
    assert transition(None, one) == [Add(one)]
    assert transition(one, two) == [Add(AddressSet.of([b]))]
    assert transition(two, one) == [Remove(AddressSet.of([b]))]
    assert transition(one, empty) == [Remove(one), NoEndpoints(True)]
    assert transition(one, None) == [Remove(one), NoEndpoints(False)]
    assert transition(empty, empty) == []


def test_snapshot_then_diffs():
    w = _watcher([service("web", target_port="http")], [pod("web-0", "198.18.0.10"), pod("web-1", "198.18.0.11", ready=False)])
    r = Recorder()
    w.subscribe(WEB, r)
    assert r.take() == [("add", ["198.18.0.10:8080"])]
    w.apply("MODIFIED", pod("web-1", "198.18.0.11"))
    w.publish()
    assert r.take() == [("add", ["198.18.0.11:8080"])]
    w.apply("DELETED", pod("web-0", "198.18.0.10"))
    w.publish()
    assert r.take() == [("remove", ["198.18.0.10:8080"])]
    w.apply("MODIFIED", pod("web-1", "198.18.0.11", phase="Failed"))
    w.publish()
    assert r.take() == [("remove", ["198.18.0.11:8080"]), ("none", True)]
    w.apply("DELETED", service("web"))
    w.publish()
    assert r.take() == [("none", False)]


def test_unknown_then_created():
    w = _watcher()
    r = Recorder()
    w.subscribe(WEB, r)
    assert r.take() == [("none", False)]
    w.apply("ADDED", service("web"))
    w.publish()
    assert r.take() == [("none", True)]
    w.apply("ADDED", pod("web-0", "198.18.0.10"))
    w.publish()
    assert r.take() == [("add", ["198.18.0.10:80"])]  # no targetPort: the service port


def test_selector_namespace_and_ports():
    w = _watcher(
        [service("web", target_port=9000)],
        [pod("web-0", "198.18.0.10"), pod("other", "198.18.0.12", app="db"), pod("web-x", "198.18.0.13", ns="elsewhere")],
    )
    r = Recorder()
    w.subscribe(WEB, r)
    assert r.take() == [("add", ["198.18.0.10:9000"])]
    # a port the Service does not declare is used as is
    w.subscribe(ServiceTarget("shop", "web", 1234), r)
    assert r.take() == [("add", ["198.18.0.10:1234"])]


def test_named_port_missing_on_pod_excludes_it():
    w = _watcher([service("web", target_port="grpc")], [pod("web-0", "198.18.0.10")])
    r = Recorder()
    w.subscribe(WEB, r)
    assert r.take() == [("none", True)]


def test_identity_only_when_meshed():
    w = _watcher([service("web")], [pod("web-0", "198.18.0.10"), pod("web-1", "198.18.0.11", meshed=False, sa="")])
    state = w.index.resolve(WEB)
    by_ip = {a.ip: a for a in state.addresses.values()}
    assert by_ip["198.18.0.10"].identity == "spiffe://cluster.local/ns/shop/sa/web"
    assert by_ip["198.18.0.11"].identity is None
    assert by_ip["198.18.0.11"].service_account == "default"
    assert dict(state.labels) == {"dst_service": "web", "dst_namespace": "shop"}


def test_ip_targets():
    w = _watcher([service("web", cluster_ip="198.19.0.5")], [pod("web-0", "198.18.0.10"), pod("web-1", "198.18.0.11", ready=False)])
    r = Recorder()
    w.subscribe(IpTarget("198.19.0.5", 80), r)
    assert r.take() == [("add", ["198.18.0.10:80"])]
    w.subscribe(IpTarget("198.18.0.11", 8080), r)  # a pod IP: that pod, even while not ready
    assert r.take() == [("add", ["198.18.0.11:8080"])]
    w.subscribe(IpTarget("203.0.113.9", 80), r)
    assert r.take() == [("none", False)]
    w.subscribe(ExternalTarget("example.com", 443), r)
    assert r.take() == [("none", False)]


def test_relist_publishes_only_differences_and_unsubscribe():
    w = _watcher([service("web")], [pod("web-0", "198.18.0.10")])
    r, other = Recorder(), Recorder()
    w.subscribe(WEB, r)
    w.subscribe(WEB, other)
    r.take()
    w.unsubscribe(WEB, other)
    w.load([service("web")], [pod("web-0", "198.18.0.10"), pod("web-1", "198.18.0.11")])
    assert r.take() == [("add", ["198.18.0.11:80"])]
    assert other.take() == [("add", ["198.18.0.10:80"])]  # only its snapshot


def test_failing_listener_does_not_stop_others():
    class Broken(Recorder):
        def add(self, addresses):
            raise RuntimeError("boom")

    w = _watcher([service("web")])
    broken, good = Broken(), Recorder()
    w.subscribe(WEB, broken)
    w.subscribe(WEB, good)
    good.take()
    w.apply("ADDED", pod("web-0", "198.18.0.10"))
    w.publish()
    assert good.take() == [("add", ["198.18.0.10:80"])]


@dataclasses.dataclass
class Ev:
    type: str
    resource: object
    resource_version: int


class FakeStore:
    """list + watch; the first watch fails with an error, the next one streams `events` then blocks."""

    def __init__(self, services, pods, events):
        self.services, self.pods, self.events = services, pods, events
        self.watches = 0
        self.lists = 0

    async def list(self, kind, namespace=None):
        self.lists += 1
        return (list(self.services) if kind == "Service" else list(self.pods)), 10

    async def watch(self, kinds, since=None):
        self.watches += 1
        if self.watches == 1:
            raise RuntimeError("Gone: too old")
        for ev in self.events:
            yield ev
        await asyncio.Event().wait()


async def test_run_relists_after_error_and_coalesces_batches():
    store = FakeStore(
        [service("web")], [pod("web-0", "198.18.0.10")],
        [
            Ev("MODIFIED", pod("web-0", "198.18.0.10", ready=False), 9),  # older than the list: skipped
            Ev("ADDED", pod("web-1", "198.18.0.11"), 11),
            Ev("MODIFIED", pod("web-1", "198.18.0.11", ready=False), 12),
            Ev("MODIFIED", pod("web-1", "198.18.0.11"), 13),
            Ev("ADDED", pod("web-2", "198.18.0.12"), 14),
        ],
    )
    w = EndpointsWatcher(trust_domain=TD, log=structlog.get_logger())
    r = Recorder()
    sleeps = []

    async def fast_sleep(d):
        sleeps.append(d)

    w.subscribe(WEB, r)  # before the first list: not known yet
    task = asyncio.create_task(w.run(store, sleep=fast_sleep))
    try:
        for _ in range(200):
            await asyncio.sleep(0)
            if store.watches >= 2 and w.ready and not w._publish_scheduled:
                break
        assert w.ready and store.lists == 4 and sleeps == [0.1]
        assert r.take() == [
            ("none", False),
            ("add", ["198.18.0.10:80"]),
            ("add", ["198.18.0.11:80", "198.18.0.12:80"]),  # one net update for the whole batch
        ]
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


def _client_view(state, updates):
    """What a proxy holds after applying `updates` (as the proto semantics say) to `state`."""
    kind, addrs = state
    for u in updates:
        if isinstance(u, Add):
            kind, addrs = "endpoints", {**addrs, **dict(u.addresses.addresses)}
        elif isinstance(u, Remove):
            addrs = {k: v for k, v in addrs.items() if k not in u.addresses.addresses}
        else:
            kind, addrs = ("exists" if u.exists else "missing"), {}
    return kind, addrs


def _expected(state):
    if state is None:
        return "missing", {}
    if not state:
        return "exists", {}
    return "endpoints", dict(state.addresses)


_addr = st.builds(lambda i, pod: Address(f"10.0.0.{i}", 80, pod=pod), st.integers(1, 6), st.sampled_from(["a", "b"]))
_state = st.one_of(st.none(), st.lists(_addr, max_size=5).map(AddressSet.of))


@given(st.lists(_state, min_size=1, max_size=6))
def test_snapshot_plus_transitions_reproduce_every_state(states):
    from meshlet.destination.watcher import snapshot

    view = _client_view(("unknown", {}), [snapshot(states[0])])
    assert view == _expected(states[0])
    for old, new in itertools.pairwise(states):
        view = _client_view(view, transition(old, new))
        assert view == _expected(new)
