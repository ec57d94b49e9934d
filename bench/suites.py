"""The suites of a run (`--suite`): which peers each compares and what the bench mesh needs for them.

* `http1`: HTTP/1.1 GETs: direct, meshlet, nginx, haproxy (the original comparison).
* `routes`: the meshlet pair with a VirtualService of 10 rules with header and regex matches
  (requests match the last one), with retries (attempts 3 on 5xx) where nothing fails, and an
  upstream failing 10 % of requests without and with retries; compared with the plain meshlet
  pair of the http1 suite. Plus the route-selection micro-benchmark (bench.routebench).
* `h2`: h2c (prior knowledge) against nginx's HTTP/2 listener: direct vs meshlet vs the nginx
  and haproxy pairs speaking HTTP/2 over mTLS (bench.h2_pairs; those of `--peers`).
* `grpc`: unary gRPC echo (bench/grpc_echo.py, grpclib): the same peers.

All meshlet peers share one bench mesh (bench.meshlet_peer.MeshletPair): the Services and
VirtualServices below select the same server pod, so only the route configuration differs.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench import configs
from bench.load import PLAIN_GET, RequestSpec
from bench.meshlet_peer import NAMESPACE, PORT, SERVER, MeshletPair, MeshSettings
from bench.peers import (
    GRPC_PORT,
    BenchEnv,
    DirectGrpcPeer,
    DirectH2Peer,
    DirectPeer,
    EchoServer,
    HaproxyPair,
    NginxPair,
    Peer,
    RunningPeer,
    grpc_spec,
)

SUITES = ("http1", "routes", "h2", "grpc")
HTTP1_PEERS = ("direct", "meshlet", "nginx", "haproxy")
ROUTE_RULES = 10
ROUTES_PATH = "/api/v1/orders/42"
ROUTES_HEADERS = (f"x-bench-route: rule-{ROUTE_RULES - 1}", "x-bench-user: user-42")


def _service(name: str, port: int, target_port: int, port_name: str) -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  selector: {{app: {SERVER}}}
  ports:
  - {{name: {port_name}, port: {port}, targetPort: {target_port}}}
"""


def route_table_vs(host: str, rules: int = ROUTE_RULES) -> str:
    """A VirtualService of `rules` rules, each matching (header exact AND uri regex) OR (header regex).
    A request with `ROUTES_HEADERS` on `ROUTES_PATH` fails every rule but the last (pure)."""
    http = []
    for i in range(rules):
        http.append(f"""\
  - name: rule-{i}
    match:
    - uri: {{regex: "/api/v[0-9]+/orders/[0-9]+"}}
      headers:
        x-bench-route: {{exact: rule-{i}}}
    - headers:
        x-bench-user: {{regex: "tenant-{i}-[a-z0-9]+"}}
    route:
    - destination: {{host: {host}, port: {{number: {PORT}}}}}
""")
    return f"""\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: {host}, namespace: {NAMESPACE}}}
spec:
  hosts: [{host}]
  http:
{"".join(http)}"""


def retry_vs(host: str, port: int, attempts: int) -> str:
    """One route to `host` with `attempts` retries on 5xx (0: explicitly none)."""
    retries = (f"{{attempts: {attempts}, retryOn: 5xx}}" if attempts else "{attempts: 0}")
    return f"""\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: {host}, namespace: {NAMESPACE}}}
spec:
  hosts: [{host}]
  http:
  - route:
    - destination: {{host: {host}, port: {{number: {port}}}}}
    retries: {retries}
"""


@dataclass(frozen=True)
class Variant:
    """One meshlet row of a suite: a Service of the bench mesh, requested in a certain way."""

    name: str
    suite: str
    service: str
    port: int
    path: str = "/"
    request: RequestSpec = PLAIN_GET
    grpc: bool = False
    docs: tuple[str, ...] = ()
    """The Service (and VirtualService) documents this row needs."""


def route_variants() -> tuple[Variant, ...]:
    flaky = configs.FLAKY_PORT
    return (
        Variant("meshlet+vs10", "routes", "bench-routes", PORT, ROUTES_PATH, RequestSpec(headers=ROUTES_HEADERS),
                docs=(_service("bench-routes", PORT, PORT, "http"), route_table_vs("bench-routes"))),
        Variant("meshlet+retry3", "routes", "bench-retry", PORT,
                docs=(_service("bench-retry", PORT, PORT, "http"), retry_vs("bench-retry", PORT, 3))),
        Variant("meshlet flaky10%", "routes", "bench-flaky", flaky,
                docs=(_service("bench-flaky", flaky, flaky, "http"), retry_vs("bench-flaky", flaky, 0))),
        Variant("meshlet flaky10%+retry3", "routes", "bench-flaky-retry", flaky,
                docs=(_service("bench-flaky-retry", flaky, flaky, "http"), retry_vs("bench-flaky-retry", flaky, 3))),
    )


def h2_variants() -> tuple[Variant, ...]:
    h2 = configs.H2_PORT
    return (Variant("meshlet", "h2", "bench-h2", h2, request=RequestSpec(http2=True),
                    docs=(_service("bench-h2", h2, h2, "http2"),)),)


def grpc_variants() -> tuple[Variant, ...]:
    return (Variant("meshlet", "grpc", "bench-grpc", GRPC_PORT, path="/bench.Echo/Echo", grpc=True,
                    docs=(_service("bench-grpc", GRPC_PORT, GRPC_PORT, "grpc"),)),)


class MeshletVariant:
    """A row measured through the shared bench mesh's proxies (the same pids as the plain pair)."""

    def __init__(self, mesh: MeshletPair, variant: Variant) -> None:
        self.mesh = mesh
        self.variant = variant
        self.name = variant.name
        self.suite = variant.suite

    @contextmanager
    def start(self, env: BenchEnv) -> Iterator[RunningPeer]:
        v = self.variant
        with self.mesh.mesh(env):
            request = grpc_spec(env.workdir) if v.grpc else v.request
            yield RunningPeer(name=v.name, url=f"http://{self.mesh.vip(v.service)}:{v.port}{v.path}",
                              sidecars=self.mesh.sidecars(), client_netns=self.mesh.client_netns,
                              request=request, grpc=v.grpc)


def _h2_pair(name: str, suite: str, echo: EchoServer | None) -> Peer:
    from bench.h2_pairs import HaproxyH2Pair, NginxH2Pair

    return NginxH2Pair(suite, echo) if name == "nginx" else HaproxyH2Pair(suite, echo)


def plan_peers(suites: tuple[str, ...], http1_peers: tuple[str, ...],
               settings: MeshSettings | None = None) -> list[Peer]:
    """The peers of the chosen suites, in measuring order; meshlet peers share one mesh."""
    variants: list[Variant] = []
    if "routes" in suites:
        variants += route_variants()
    if "h2" in suites:
        variants += h2_variants()
    if "grpc" in suites:
        variants += grpc_variants()
    docs = "---\n".join(d for v in variants for d in v.docs)
    mesh = MeshletPair(settings or MeshSettings(), extra_docs=docs, grpc="grpc" in suites)
    peers: list[Peer] = []
    if "http1" in suites:
        by_name: dict[str, Peer] = {"direct": DirectPeer(), "meshlet": mesh, "nginx": NginxPair(),
                                    "haproxy": HaproxyPair()}
        peers += [by_name[n] for n in http1_peers]
    elif "routes" in suites:
        peers += [DirectPeer(), mesh]  # the routes rows are compared with the plain pair
    pairs = [n for n in ("nginx", "haproxy") if n in http1_peers]
    if "h2" in suites:
        peers.append(DirectH2Peer())
        peers += [_h2_pair(n, "h2", None) for n in pairs]
    if "grpc" in suites:
        echo = EchoServer()
        peers.append(DirectGrpcPeer(echo))
        peers += [_h2_pair(n, "grpc", echo) for n in pairs]
    peers += [MeshletVariant(mesh, v) for v in variants]
    return peers
