"""nginx and haproxy sidecar pairs for the h2 and grpc suites: h2c from the client into the
client-side instance, HTTP/2 over mutual TLS (ALPN h2) between the instances, h2c to the app
(nginx's HTTP/2 listener, or the gRPC echo server). nginx forwards HTTP/2 upstream only with
`grpc_pass`, which carries any HTTP/2 request, so it serves both suites; haproxy uses
`proto h2` on its listeners and servers.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import configs
from bench.load import RequestSpec
from bench.peers import (
    GRPC_PORT,
    BenchEnv,
    EchoServer,
    HaproxyPair,
    NginxPair,
    RunningPeer,
    grpc_spec,
)

H2_SIDECAR_PORTS = {("nginx", "h2"): (15082, 15445), ("nginx", "grpc"): (15083, 15446),
                    ("haproxy", "h2"): (15084, 15447), ("haproxy", "grpc"): (15085, 15448)}
"""(client-side h2c port on the client's loopback, server-side mTLS port), per pair and suite."""


class _H2Mixin:
    name: str
    suite: str
    echo: EchoServer | None

    def _hops(self, env: BenchEnv) -> tuple[configs.Hop, configs.Hop]:
        plain, mtls = H2_SIDECAR_PORTS[(self.name, self.suite)]
        app = GRPC_PORT if self.suite == "grpc" else configs.H2_PORT
        return (configs.Hop("127.0.0.1", plain, env.topo.server.ip, mtls),
                configs.Hop(env.topo.server.ip, mtls, "127.0.0.1", app))

    @contextmanager
    def start(self, env: BenchEnv) -> Iterator[RunningPeer]:
        grpc = self.suite == "grpc"
        with self._app(env), super().start(env) as running:  # type: ignore[misc]
            path = "bench.Echo/Echo" if grpc else ""
            yield RunningPeer(name=self.name, url=running.url + path, sidecars=running.sidecars,
                              request=grpc_spec(env.workdir) if grpc else RequestSpec(http2=True), grpc=grpc)

    @contextmanager
    def _app(self, env: BenchEnv) -> Iterator[None]:
        if self.echo is None:
            yield
        else:
            with self.echo.running(env):
                yield


class NginxH2Pair(_H2Mixin, NginxPair):
    def __init__(self, suite: str, echo: EchoServer | None = None) -> None:
        self.suite, self.echo = suite, echo

    def _argv(self, env: BenchEnv, side: str, hop: configs.Hop, workdir: Path) -> list[str]:
        sub = workdir / f"{self.suite}-{side}"
        sub.mkdir(parents=True, exist_ok=True)
        tls = self._tls(env, side)
        render = configs.nginx_h2_client_side if side == "client" else configs.nginx_h2_server_side
        conf = sub / "nginx.conf"
        conf.write_text(render(sub, hop, tls))
        return ["nginx", "-p", str(sub), "-e", "stderr", "-c", str(conf)]


class HaproxyH2Pair(_H2Mixin, HaproxyPair):
    def __init__(self, suite: str, echo: EchoServer | None = None) -> None:
        self.suite, self.echo = suite, echo

    def _argv(self, env: BenchEnv, side: str, hop: configs.Hop, workdir: Path) -> list[str]:
        tls = self._tls(env, side)
        text = configs.haproxy_h2_client_side(hop, tls) if side == "client" else configs.haproxy_h2_server_side(hop, tls)
        conf = workdir / f"haproxy-{self.suite}-{side}.cfg"
        conf.write_text(text)
        return ["haproxy", "-db", "-f", str(conf)]
