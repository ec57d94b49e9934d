"""Workloads of the policy2 real-path tests (run inside a pod's netns).

    python policy2_apps.py serve NAME      h2c on :8082: answers 200 with "NAME PATH trailers=<request
                                           trailers as k=v;...>" (after `x-delay` seconds); a request with `x-stall: 1` is never
                                           answered (its reset is printed: "reset PATH CODE")
    python policy2_apps.py h2 URL [k=v headers...] [--trailer k=v] [--body TEXT | --grpc-empty] [--authority A]
                                           one h2c request with prior knowledge; prints JSON
    python policy2_apps.py multi URL N [k=v headers...]
                                           N concurrent GETs on one h2c connection; prints JSON
    python policy2_apps.py http1 URL N [k=v headers...]
                                           N HTTP/1.1 GETs, redirects not followed; prints JSON
    python policy2_apps.py watch URL FAILURES LIMIT
                                           HTTP/1 GETs back to back until FAILURES 5xx; their times
"""
from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions


class Echo(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.heads: dict[int, dict[bytes, bytes]] = {}
        self.trailers: dict[int, list[tuple[bytes, bytes]]] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self.heads[ev.stream_id] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                self.trailers[ev.stream_id] = list(ev.headers)
            elif isinstance(ev, h2.events.StreamReset):
                h = self.heads.get(ev.stream_id, {})
                print(f"reset {h.get(b':path', b'').decode()} {ev.error_code}", flush=True)
            elif isinstance(ev, h2.events.StreamEnded):
                h = self.heads.get(ev.stream_id, {})
                if h.get(b"x-stall") == b"1":
                    continue
                delay = float(h.get(b"x-delay", b"0") or 0)
                if delay:
                    asyncio.get_running_loop().call_later(delay, self._answer, ev.stream_id)
                    continue
                self._answer(ev.stream_id)
        self.transport.write(self.conn.data_to_send())

    def _answer(self, sid: int) -> None:
        if self.transport.is_closing():
            return
        h = self.heads.pop(sid, {})
        t = ";".join(f"{k.decode()}={v.decode()}" for k, v in self.trailers.pop(sid, []))
        body = f"{self.name} {h.get(b':path', b'').decode()} trailers={t}".encode()
        try:
            self.conn.send_headers(sid, [(b":status", b"200"), (b"content-length", str(len(body)).encode())])
            self.conn.send_data(sid, body, end_stream=True)
        except h2.exceptions.H2Error:
            return  # reset meanwhile
        self.transport.write(self.conn.data_to_send())


async def serve(name: str) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: Echo(name), "0.0.0.0", 8082)
    print("policy2 apps ready", flush=True)
    await asyncio.Event().wait()


def h2_request(url: str, headers: dict[str, str], trailers: dict[str, str], body: bytes,
               authority: str = "") -> dict[str, Any]:
    u = urlsplit(url)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    method = b"POST" if body or trailers else b"GET"
    with socket.create_connection((u.hostname, u.port or 80), timeout=20) as s:
        conn.send_headers(1, [(b":method", method), (b":scheme", b"http"), (b":path", (u.path or "/").encode()),
                              (b":authority", (authority or u.netloc).encode())]
                          + [(k.encode(), v.encode()) for k, v in headers.items()],
                          end_stream=not body and not trailers)
        if body:
            conn.send_data(1, body, end_stream=not trailers)
        if trailers:
            conn.send_headers(1, [(k.encode(), v.encode()) for k, v in trailers.items()], end_stream=True)
        s.sendall(conn.data_to_send())
        out: dict[str, Any] = {"body": ""}
        while True:
            data = s.recv(65536)
            if not data:
                out["error"] = "connection closed"
                return out
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    out["headers"] = {k.decode(): v.decode() for k, v in ev.headers}
                elif isinstance(ev, h2.events.TrailersReceived):
                    out["trailers"] = {k.decode(): v.decode() for k, v in ev.headers}
                elif isinstance(ev, h2.events.DataReceived):
                    out["body"] += ev.data.decode()
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    out["reset"] = ev.error_code
                    return out
                elif isinstance(ev, h2.events.StreamEnded):
                    return out
            s.sendall(conn.data_to_send())


def h2_multi(url: str, n: int, headers: dict[str, str]) -> dict[str, Any]:
    """`n` concurrent GETs on one connection; the statuses (and proxy errors) in stream order."""
    u = urlsplit(url)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    got: dict[int, dict[str, str]] = {}
    with socket.create_connection((u.hostname, u.port or 80), timeout=20) as s:
        sids = []
        for _ in range(n):
            sid = conn.get_next_available_stream_id()
            sids.append(sid)
            conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", (u.path or "/").encode()),
                                    (b":authority", u.netloc.encode())]
                              + [(k.encode(), v.encode()) for k, v in headers.items()], end_stream=True)
        s.sendall(conn.data_to_send())
        done: set[int] = set()
        while len(done) < n:
            data = s.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    got[ev.stream_id] = {k.decode(): v.decode() for k, v in ev.headers}
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    done.add(ev.stream_id)
            s.sendall(conn.data_to_send())
    return {"statuses": [got.get(sid, {}).get(":status", "none") for sid in sids],
            "errors": [got.get(sid, {}).get("meshlet-proxy-error", "") for sid in sids]}


def watch(url: str, failures: int, limit: float) -> dict[str, Any]:
    """GET `url` back to back until `failures` 5xx answers (or `limit` seconds): their times."""
    import time
    import urllib.error
    import urllib.request

    start = time.monotonic()
    times: list[float] = []
    n = 0
    while len(times) < failures and time.monotonic() - start < limit:
        n += 1
        try:
            urllib.request.urlopen(url, timeout=10).read()
        except urllib.error.HTTPError as e:
            if e.code >= 500:
                times.append(round(time.monotonic() - start, 3))
    return {"failures": times, "requests": n}


def http1(url: str, n: int, headers: dict[str, str]) -> list[dict[str, Any]]:
    """`n` HTTP/1.1 GETs (new connection each, redirects not followed; a `body` "header" makes
    them POSTs with that body): status, headers, raw header names, body."""
    import http.client

    u = urlsplit(url)
    body = headers.pop("body", None)
    out = []
    for _ in range(n):
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=20)
        c.request("GET" if body is None else "POST", u.path or "/", body=body, headers=headers)
        r = c.getresponse()
        out.append({"status": r.status, "headers": {k.lower(): v for k, v in r.getheaders()},
                    "names": [k for k, _ in r.getheaders()], "body": r.read().decode("utf-8", "replace")})
        c.close()
    return out


def main(argv: list[str]) -> None:
    if argv[0] == "serve":
        asyncio.run(serve(argv[1]))
        return
    if argv[0] == "http1":
        hs = dict(a.partition("=")[::2] for a in argv[3:])
        print(json.dumps(http1(argv[1], int(argv[2]), hs)), flush=True)
        return
    if argv[0] == "watch":
        print(json.dumps(watch(argv[1], int(argv[2]), float(argv[3]))), flush=True)
        return
    if argv[0] == "multi":
        hs = dict(a.partition("=")[::2] for a in argv[3:])
        print(json.dumps(h2_multi(argv[1], int(argv[2]), hs)), flush=True)
        return
    if argv[0] == "h2":
        headers: dict[str, str] = {}
        trailers: dict[str, str] = {}
        body = b""
        authority = ""
        args = iter(argv[2:])
        for a in args:
            if a == "--trailer":
                k, _, v = next(args).partition("=")
                trailers[k] = v
            elif a == "--body":
                body = next(args).encode()
            elif a == "--authority":
                authority = next(args)
            elif a == "--grpc-empty":  # one empty gRPC message
                body = b"\x00\x00\x00\x00\x00"
            else:
                k, _, v = a.partition("=")
                headers[k] = v
        print(json.dumps(h2_request(argv[1], headers, trailers, body, authority)), flush=True)
        return
    raise SystemExit(f"unknown command {argv[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
