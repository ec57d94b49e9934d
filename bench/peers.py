"""The peers compared in one run: a direct connection and sidecar pairs.

A peer starts its sidecars (server side first, then client side), waits until
each is ready and yields the URL the client requests plus the sidecar processes
to measure. nginx and haproxy pairs use the configs from `bench.configs` and the
throw-away PKI from `bench.certs`; the meshlet pair lives in `bench.meshlet_peer`.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench import configs
from bench.certs import Pki
from bench.load import PLAIN_GET, RequestSpec
from bench.procs import (
    NetnsWorker,
    Proc,
    ProcessError,
    spawn,
    stop,
    tcp_accepts,
    wait_until,
)
from bench.topology import Topology

SIDECAR_PORTS = {"nginx": (15080, 15443), "haproxy": (15081, 15444)}
"""Per pair (all run at once): the client-side plaintext port on the client's loopback,
and the server-side mTLS port on the server's address."""
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class BenchEnv:
    """What every peer shares: namespaces, scratch dir, PKI, CPU placement."""

    topo: Topology
    workdir: Path
    pki: Pki
    backend_port: int = 8080
    client_cpus: str = "0"
    """Load tool and client-side sidecar."""
    server_cpus: str = "1"
    """Backend server and server-side sidecar."""
    nice: int = 0
    """Nice value of every measured process (load tools, servers, sidecars); negative = ahead of other work."""
    workers: dict[str, NetnsWorker] = field(default_factory=dict)
    """One thread inside each namespace (by netns name), for readiness probes."""

    def worker(self, netns: str) -> NetnsWorker:
        """The thread inside `netns`, created on first use (closed by `close_workers`)."""
        if netns not in self.workers:
            self.workers[netns] = NetnsWorker(netns)
        return self.workers[netns]

    def close_workers(self) -> None:
        for worker in self.workers.values():
            worker.close()
        self.workers.clear()

    @property
    def direct_url(self) -> str:
        return f"http://{self.topo.server.ip}:{self.backend_port}/"


@dataclass(frozen=True)
class Sidecar:
    side: str
    """'client' or 'server'."""
    pid: int
    """Root of the sidecar's process tree (measured together)."""
    start_to_ready_ms: float | None
    """None when the peer measures it otherwise (the meshlet pair: after the load)."""
    proc: Proc | None = None
    """Set when the harness spawned it (and so stops it)."""


@dataclass(frozen=True)
class RunningPeer:
    name: str
    url: str
    sidecars: tuple[Sidecar, ...]
    client_netns: str | None = None
    """Where the load tool runs; None: the bench client namespace."""
    request: RequestSpec = PLAIN_GET
    grpc: bool = False
    """Verified with a real gRPC call (grpc-status 0), not an HTTP GET."""


GRPC_PORT = 50051
GRPC_ECHO = Path(__file__).resolve().parent / "grpc_echo.py"


def grpc_spec(workdir: Path) -> RequestSpec:
    """POST of one framed echo message with gRPC's headers, over h2c."""
    from bench.grpc_echo import GRPC_HEADERS, request_body

    body = workdir / "grpc-request.bin"
    if not body.exists():
        body.parent.mkdir(parents=True, exist_ok=True)
        body.write_bytes(request_body())
    return RequestSpec(http2=True, headers=GRPC_HEADERS, body=body)


def grpc_server_argv(python: str, port: int = GRPC_PORT) -> list[str]:
    return [python, str(GRPC_ECHO), "--host", "0.0.0.0", "--port", str(port)]


class Peer(Protocol):
    name: str

    def start(self, env: BenchEnv) -> AbstractContextManager[RunningPeer]: ...


def start_backend(env: BenchEnv) -> Proc:
    """nginx returning a small body from memory: the neutral server of every peer."""
    workdir = env.workdir / "backend"
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(configs.nginx_backend(workdir, env.backend_port))
    proc = spawn("backend", ["nginx", "-p", str(workdir), "-e", "stderr", "-c", str(conf)],
                 log=workdir / "log", netns=env.topo.server.netns, cpus=env.server_cpus, nice=env.nice)
    worker = env.worker(env.topo.server.netns)
    wait_until(lambda: worker.call(tcp_accepts, env.topo.server.ip, env.backend_port),
               what="the backend server", timeout=READY_TIMEOUT, procs=[proc])
    return proc


def _start_listening(env: BenchEnv, *, name: str, side: str, argv: list[str], host: str, port: int,
                     workdir: Path) -> Sidecar:
    """Start one sidecar; ready means its listener accepts connections."""
    netns = env.topo.client.netns if side == "client" else env.topo.server.netns
    cpus = env.client_cpus if side == "client" else env.server_cpus
    worker = env.worker(netns)
    if worker.call(tcp_accepts, host, port):
        raise ProcessError(f"{host}:{port} in {netns} is already taken: {name} {side}-side cannot listen there")
    proc = spawn(f"{name}-{side}", argv, log=workdir / f"{side}.log", netns=netns, cpus=cpus, nice=env.nice)
    try:
        ready_at = wait_until(lambda: worker.call(tcp_accepts, host, port),
                              what=f"{name} {side}-side listener {host}:{port}", timeout=READY_TIMEOUT, procs=[proc])
        proc.check_alive()
    except BaseException:
        stop(proc)
        raise
    return Sidecar(side=side, pid=proc.pid, proc=proc, start_to_ready_ms=(ready_at - proc.started_at) * 1000.0)


class DirectPeer:
    """The client talks straight to the server: the baseline."""

    name = "direct"

    @contextmanager
    def start(self, env: BenchEnv) -> Iterator[RunningPeer]:
        yield RunningPeer(name=self.name, url=env.direct_url, sidecars=())


class DirectH2Peer:
    """h2c straight to the backend's HTTP/2 listener."""

    name = "direct"
    suite = "h2"

    @contextmanager
    def start(self, env: BenchEnv) -> Iterator[RunningPeer]:
        yield RunningPeer(name=self.name, url=f"http://{env.topo.server.ip}:{configs.H2_PORT}/", sidecars=(),
                          request=RequestSpec(http2=True))


class EchoServer:
    """The gRPC echo server in the server namespace, shared by the grpc peers that need it
    (started by the first, stopped after the last)."""

    def __init__(self) -> None:
        self._users = 0
        self._proc: Proc | None = None

    @contextmanager
    def running(self, env: BenchEnv) -> Iterator[None]:
        if self._users == 0:
            import sys

            proc = spawn("grpc-echo", grpc_server_argv(sys.executable), log=env.workdir / "grpc-echo.log",
                         netns=env.topo.server.netns, cpus=env.server_cpus, nice=env.nice)
            try:
                worker = env.worker(env.topo.server.netns)
                wait_until(lambda: worker.call(tcp_accepts, env.topo.server.ip, GRPC_PORT),
                           what="the gRPC echo server", timeout=READY_TIMEOUT, procs=[proc])
            except BaseException:
                stop(proc)
                raise
            self._proc = proc
        self._users += 1
        try:
            yield
        finally:
            self._users -= 1
            if self._users == 0 and self._proc is not None:
                stop(self._proc)
                self._proc = None


class DirectGrpcPeer:
    """Unary gRPC calls straight to the echo server (in the server namespace)."""

    name = "direct"
    suite = "grpc"

    def __init__(self, echo: EchoServer | None = None) -> None:
        self.echo = echo or EchoServer()

    @contextmanager
    def start(self, env: BenchEnv) -> Iterator[RunningPeer]:
        with self.echo.running(env):
            yield RunningPeer(name=self.name, url=f"http://{env.topo.server.ip}:{GRPC_PORT}/bench.Echo/Echo",
                              sidecars=(), request=grpc_spec(env.workdir), grpc=True)


class _PairPeer:
    """A client-side and a server-side instance of the same server software."""

    name = ""

    @property
    def workdir_name(self) -> str:
        suite = getattr(self, "suite", "http1")
        return self.name if suite == "http1" else f"{self.name}-{suite}"

    def _tls(self, env: BenchEnv, side: str) -> configs.TlsFiles:
        own = env.pki.client if side == "client" else env.pki.server
        peer_name = "server.bench" if side == "client" else "client.bench"
        return configs.TlsFiles(cert=own.cert, key=own.key, chain=own.chain, ca=env.pki.ca, peer_name=peer_name)

    def _hops(self, env: BenchEnv) -> tuple[configs.Hop, configs.Hop]:
        plain, mtls = SIDECAR_PORTS[self.name]
        client = configs.Hop("127.0.0.1", plain, env.topo.server.ip, mtls)
        server = configs.Hop(env.topo.server.ip, mtls, "127.0.0.1", env.backend_port)
        return client, server

    def _argv(self, env: BenchEnv, side: str, hop: configs.Hop, workdir: Path) -> list[str]:
        raise NotImplementedError

    @contextmanager
    def start(self, env: BenchEnv) -> Iterator[RunningPeer]:
        workdir = env.workdir / self.workdir_name
        workdir.mkdir(parents=True, exist_ok=True)
        client_hop, server_hop = self._hops(env)
        started: list[Sidecar] = []
        try:
            for side, hop in (("server", server_hop), ("client", client_hop)):
                argv = self._argv(env, side, hop, workdir)
                started.append(_start_listening(env, name=self.name, side=side, argv=argv,
                                                host=hop.listen_host, port=hop.listen_port, workdir=workdir))
            url = f"http://{client_hop.listen_host}:{client_hop.listen_port}/"
            yield RunningPeer(name=self.name, url=url, sidecars=tuple(started))
        finally:
            for sidecar in reversed(started):
                if sidecar.proc is not None:
                    stop(sidecar.proc)


class NginxPair(_PairPeer):
    name = "nginx"

    def _argv(self, env: BenchEnv, side: str, hop: configs.Hop, workdir: Path) -> list[str]:
        sub = workdir / side
        sub.mkdir(parents=True, exist_ok=True)
        tls = self._tls(env, side)
        text = configs.nginx_client_side(sub, hop, tls) if side == "client" else configs.nginx_server_side(sub, hop, tls)
        conf = sub / "nginx.conf"
        conf.write_text(text)
        return ["nginx", "-p", str(sub), "-e", "stderr", "-c", str(conf)]


class HaproxyPair(_PairPeer):
    name = "haproxy"

    def _argv(self, env: BenchEnv, side: str, hop: configs.Hop, workdir: Path) -> list[str]:
        tls = self._tls(env, side)
        text = configs.haproxy_client_side(hop, tls) if side == "client" else configs.haproxy_server_side(hop, tls)
        conf = workdir / f"haproxy-{side}.cfg"
        conf.write_text(text)
        return ["haproxy", "-db", "-f", str(conf)]
