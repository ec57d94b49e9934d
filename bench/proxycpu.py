"""Per-request CPU of the proxy's HTTP/1 path: a meshlet sidecar pair on loopback.

The pair runs in one child process (`python -m bench.proxycpu pair ...`): two proxies built
from the proxy's own pieces (`OutboundRouter`, `InboundRouter`, `Pools`, `Connector`,
`HttpServer`), the client proxy with the profile destination sends for a Service without a
VirtualService (one default route with Istio's default retry policy) and the server pod's
endpoint with its SPIFFE identity, so every request goes client proxy → mTLS (certificates
from meshlet's own CA code) → server proxy → app. What is left out is only what happens once
per connection (iptables REDIRECT, SO_ORIGINAL_DST, protocol sniffing): each listener hands
accepted connections straight to `HttpServer` with the original destination filled in.

The parent process runs the app (HTTP/1.1 keep-alive, "ok"; in `--mode retry-5xx` every
tenth request answers 503 and the route retries on 5xx) and the load: sequential requests
on one keep-alive connection, so the proxies do the same work for every request. Measures:

* CPU time of the pair process (`getrusage`) over the measured requests, µs per request;
* `--profile`: cProfile of the pair over the measured requests (top functions printed);
* `--callgrind`: the pair process runs under `valgrind --tool=callgrind` with
  instrumentation off until warmed up; counters are zeroed before the measured requests and
  dumped after them (`callgrind_control`), giving instructions per request: repeatable on
  a busy machine, unlike time.

The app also counts the connections it accepted (the server proxy's upstream connections).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

AUTHORITY = "bench-server.bench.svc.cluster.local:8080"
VIP, VIP_PORT = "198.19.253.10", 8080
CLIENT_ID = "spiffe://cluster.local/ns/bench/sa/bench-client"
SERVER_ID = "spiffe://cluster.local/ns/bench/sa/bench-server"
MODES = ("plain", "default-route", "retry-5xx")
"""plain: no profile (the issue-2 path); default-route: what destination sends for a Service
without VirtualService; retry-5xx: a route retrying 5xx twice, against an app failing every
tenth request (within the retry budget's 20%)."""
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
FAIL = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\nbusy"


@dataclass(frozen=True)
class CpuResult:
    mode: str
    requests: int
    cpu_us_per_request: float
    """CPU time (user + system) of the pair process per request."""
    instructions_per_request: float | None
    """Under callgrind: instructions (Ir) of the pair process per request."""
    app_connections: int
    """Connections the app accepted over the whole run (the server proxy's upstream connections)."""
    inbound_connections: int
    """mTLS connections the server proxy accepted over the whole run (the client proxy's upstream)."""


# === the pair (child process) ===

def _material(ca, identity: str):  # noqa: ANN001, ANN202
    from cryptography import x509

    from meshlet.proxy.identity import build_csr, generate_key, material_from

    key = generate_key()
    csr = x509.load_pem_x509_csr(build_csr(key, identity))
    from cryptography.hazmat.primitives import serialization

    leaf = ca.sign_leaf(csr, identity).public_bytes(serialization.Encoding.DER)
    return material_from(key, identity, leaf, [ca.issuer_der], ca.anchors_pem)


def _profile(mode: str):  # noqa: ANN202
    from meshlet.api import destination_pb as pb
    from meshlet.destination.profiles import default_route, retry_budget
    from meshlet.proxy.profile import compile_profile

    retry = pb.RetryPolicy(attempts=2, retry_on=["5xx"]) if mode == "retry-5xx" else None
    msg = pb.DestinationProfile(fully_qualified_name=AUTHORITY.rpartition(":")[0],
                                routes=[default_route(AUTHORITY, retry)], retry_budget=retry_budget())
    return compile_profile(msg, {}, "bench")


class _Accept:
    """Listener protocol that hands the connection to a fresh `HttpServer` (what `DataPlane`
    does once sniffing said HTTP/1)."""

    def __init__(self, make, counter: list[int]) -> None:  # noqa: ANN001
        self.make = make
        self.counter = counter

    def connection_made(self, transport) -> None:  # noqa: ANN001
        self.counter[0] += 1
        self.make(transport).attach(transport, b"")

    def connection_lost(self, exc) -> None:  # noqa: ANN001
        pass


async def _pair(mode: str, app_port: int, profile_out: str) -> None:
    from types import SimpleNamespace

    from meshlet.controller.log import setup
    from meshlet.identity.issuer import CA, new_anchor, new_issuer
    from meshlet.proxy.client import Connector, Pools
    from meshlet.proxy.config import ProxyConfig
    from meshlet.proxy.endpoints import Add, Endpoint, labels_of
    from meshlet.proxy.exchange import ConnCtx
    from meshlet.proxy.metrics import ProxyMetrics
    from meshlet.proxy.profiles import Profiles
    from meshlet.proxy.resolve import Resolver
    from meshlet.proxy.routing import InboundRouter, OutboundRouter
    from meshlet.proxy.server import HttpServer
    from meshlet.proxy.tlsctx import peer_id

    anchor, anchor_key = new_anchor("cluster.local")
    issuer, issuer_key = new_issuer("cluster.local", anchor, anchor_key)
    ca = CA("cluster.local", (anchor,), issuer, issuer_key)
    client_mat, server_mat = _material(ca, CLIENT_ID), _material(ca, SERVER_ID)
    log = setup("proxy", "info")
    loop = asyncio.get_running_loop()
    accepted = [0]

    # server side: mTLS in, the app on 127.0.0.1:<app_port>
    s_cfg = ProxyConfig(identity=SERVER_ID, namespace="bench", pod="bench-server")
    s_metrics = ProxyMetrics("bench", "bench-server")
    s_pools = Pools(Connector(SimpleNamespace(current=server_mat), 5.0), s_metrics,  # type: ignore[arg-type]
                    max_idle=s_cfg.pool_max_idle, idle_timeout=s_cfg.idle_timeout)
    inbound = InboundRouter(s_cfg, s_pools, s_metrics)
    s_conns: set[object] = set()

    def make_in(transport):  # noqa: ANN001, ANN202
        ctx = ConnCtx("inbound", "127.0.0.1", app_port, tls=True,
                      client_id=peer_id(transport.get_extra_info("peercert")))
        return HttpServer(inbound, ctx, None, s_conns, log)

    in_srv = await loop.create_server(lambda: _Accept(make_in, accepted), "127.0.0.1", 0, ssl=server_mat.server_ctx)
    in_port = in_srv.sockets[0].getsockname()[1]

    # client side: plaintext in from the app, the server pod as the target's one endpoint
    c_cfg = ProxyConfig(identity=CLIENT_ID, namespace="bench", pod="bench-client")
    c_metrics = ProxyMetrics("bench", "bench-client")
    c_pools = Pools(Connector(SimpleNamespace(current=client_mat), 5.0), c_metrics,  # type: ignore[arg-type]
                    max_idle=c_cfg.pool_max_idle, idle_timeout=c_cfg.idle_timeout)
    resolver = Resolver(c_cfg, c_metrics, log)
    profiles = Profiles(c_cfg, log)
    target = resolver.get(AUTHORITY)
    target.state.apply(Add((Endpoint("127.0.0.1", in_port, identity=SERVER_ID),),
                           labels_of({"service": "bench-server", "namespace": "bench"}.items())),
                       time.monotonic(), snapshot=True)
    if mode != "plain":
        profiles.get(AUTHORITY).profile = _profile(mode)
    outbound = OutboundRouter(c_cfg, resolver, c_pools, c_metrics, profiles=profiles)
    c_conns: set[object] = set()
    src = c_metrics.tcp(c_metrics.base("outbound") + ("src",))

    def make_out(transport):  # noqa: ANN001, ANN202
        src.opened()
        return HttpServer(outbound, ConnCtx("outbound", VIP, VIP_PORT), src, c_conns, log)

    out_srv = await loop.create_server(lambda: _Accept(make_out, [0]), "127.0.0.1", 0)
    print(json.dumps({"port": out_srv.sockets[0].getsockname()[1]}), flush=True)

    import cProfile
    import resource

    prof = cProfile.Profile() if profile_out else None
    started = 0.0
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).strip():
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu = ru.ru_utime + ru.ru_stime
        if line == b"start":
            started = cpu
            if prof is not None:
                prof.enable()
        elif line == b"stop":
            if prof is not None:
                prof.disable()
                prof.dump_stats(profile_out)
            print(json.dumps({"cpu": cpu - started, "inbound_connections": accepted[0]}), flush=True)
        print(json.dumps({"ack": line.decode()}), flush=True)


# === app and load (parent process) ===

class _App(asyncio.Protocol):
    def __init__(self, state: dict[str, int], flaky: bool) -> None:
        self.state, self.flaky, self.buf = state, flaky, b""

    def connection_made(self, transport) -> None:  # noqa: ANN001
        self.transport = transport
        self.state["connections"] += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:  # bodiless GETs only
            self.buf = self.buf[end + 4:]
            self.state["requests"] += 1
            fail = self.flaky and self.state["requests"] % 10 == 1
            self.transport.write(FAIL if fail else OK)


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> bytes:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    return head.split(b" ", 2)[1] + b" " + body


class _Child:
    def __init__(self, argv: list[str], callgrind_out: str | None) -> None:
        self.callgrind_out = callgrind_out
        if callgrind_out:
            argv = ["valgrind", "-q", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={callgrind_out}",
                    *argv]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONHASHSEED": "0"}, cwd=str(Path(__file__).parents[1]))

    def read(self) -> dict[str, object]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"the pair process ended (exit {self.proc.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def command(self, what: str) -> dict[str, object]:
        self.proc.stdin.write(what + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        got = self.read()
        return got if "ack" in got else {**got, **self.read()}

    def callgrind(self, flag: str) -> None:
        subprocess.run(["callgrind_control", flag, str(self.proc.pid)], check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _instructions(path: str) -> int:
    """Total Ir of a callgrind dump (the last dump written for the process)."""
    dumps = sorted(Path(path).parent.glob(Path(path).name + "*"), key=lambda p: p.stat().st_mtime)
    for line in dumps[-1].read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dumps[-1]}")


async def measure(mode: str, requests: int = 2000, warmup: int = 300, *, profile_out: str = "",
                  callgrind: bool = False) -> CpuResult:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    state = {"connections": 0, "requests": 0}
    loop = asyncio.get_running_loop()
    app = await loop.create_server(lambda: _App(state, mode == "retry-5xx"), "127.0.0.1", 0)
    app_port = app.sockets[0].getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="meshlet-proxycpu-")
    cg_out = os.path.join(tmp, "callgrind.out") if callgrind else None
    child = _Child([sys.executable, "-m", "bench.proxycpu", "pair", "--mode", mode, "--app-port", str(app_port),
                    "--profile-out", profile_out], cg_out)
    try:
        port = int((await asyncio.to_thread(child.read))["port"])  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        req = f"GET /bench HTTP/1.1\r\nHost: {AUTHORITY}\r\nUser-Agent: proxycpu\r\n\r\n".encode()
        for _ in range(warmup):
            got = await _request(reader, writer, req)
            if got != b"200 ok":
                raise RuntimeError(f"warm-up request answered {got!r}")
        if callgrind:
            await asyncio.to_thread(child.callgrind, "--instr=on")
            for _ in range(50):  # warm the instrumented code paths
                await _request(reader, writer, req)
            await asyncio.to_thread(child.callgrind, "--zero")
        await asyncio.to_thread(child.command, "start")
        for _ in range(requests):
            got = await _request(reader, writer, req)
            if got != b"200 ok":
                raise RuntimeError(f"request answered {got!r}")
        if callgrind:
            await asyncio.to_thread(child.callgrind, "--dump")
        stopped = await asyncio.to_thread(child.command, "stop")
        writer.close()
        instr = _instructions(cg_out) / requests if cg_out else None
        return CpuResult(mode, requests, float(stopped["cpu"]) * 1e6 / requests, instr,  # type: ignore[arg-type]
                         state["connections"], int(stopped["inbound_connections"]))  # type: ignore[call-overload]
    finally:
        await asyncio.to_thread(child.stop)
        app.close()


def _print_profile(path: str, top: int) -> None:
    import pstats

    pstats.Stats(path).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.proxycpu", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pair = sub.add_parser("pair", help="(internal) run the proxy pair")
    pair.add_argument("--mode", choices=MODES, required=True)
    pair.add_argument("--app-port", type=int, required=True)
    pair.add_argument("--profile-out", default="")
    run = sub.add_parser("run", help="measure per-request CPU")
    run.add_argument("--mode", choices=MODES, action="append")
    run.add_argument("--requests", type=int, default=2000)
    run.add_argument("--warmup", type=int, default=300)
    run.add_argument("--profile", action="store_true", help="cProfile the pair; print the top functions")
    run.add_argument("--top", type=int, default=25)
    run.add_argument("--callgrind", action="store_true", help="count instructions under valgrind")
    args = p.parse_args(argv)
    import uvloop

    if args.cmd == "pair":
        uvloop.run(_pair(args.mode, args.app_port, args.profile_out))
        return 0
    for mode in args.mode or list(MODES):
        out = tempfile.mktemp(prefix="meshlet-proxycpu-", suffix=".prof") if args.profile else ""
        r = uvloop.run(measure(mode, args.requests, args.warmup, profile_out=out, callgrind=args.callgrind))
        print(json.dumps(asdict(r)), flush=True)
        if out:
            _print_profile(out, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
