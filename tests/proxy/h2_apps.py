"""HTTP/2 workloads of the h2 real-path tests (run inside a pod's netns).

    python h2_apps.py serve NAME        gRPC (grpclib) on :50051 and a plain h2c server on :8081
    python h2_apps.py grpc HOST PORT [k=v metadata...]    one unary call; prints JSON
    python h2_apps.py get URL [k=v headers...]            one h2c GET with prior knowledge; prints JSON

The gRPC service `/meshlet.test.Echo/Say` answers "NAME:" + request. Metadata `x-fail-first: KEY`
makes the first call with that KEY fail with UNAVAILABLE; `x-sleep: SECONDS` delays the answer.
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
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError

METHOD = "/meshlet.test.Echo/Say"


class RawCodec(CodecBase):
    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return message

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


class Echo:
    def __init__(self, name: str) -> None:
        self.name = name
        self.failed: set[str] = set()

    async def say(self, stream: Any) -> None:
        req = await stream.recv_message()
        md = dict(stream.metadata or {})
        key = md.get("x-fail-first")
        if key and key not in self.failed:
            self.failed.add(key)
            raise GRPCError(Status.UNAVAILABLE, "first attempt fails")
        if md.get("x-sleep"):
            await asyncio.sleep(float(md["x-sleep"]))
        if md.get("x-size"):  # a large answer: its size and the request's checksum
            import hashlib

            await stream.send_message(hashlib.sha256(req).hexdigest().encode() + b"x" * int(md["x-size"]))
            return
        await stream.send_message(f"{self.name}:".encode() + req)

    def __mapping__(self) -> dict[str, Handler]:
        return {METHOD: Handler(self.say, Cardinality.UNARY_UNARY, bytes, bytes)}


class PlainH2(asyncio.Protocol):
    """Answers every request with 200 and "NAME PATH end-user=VALUE"; prints "request AUTHORITY PATH"."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.heads: dict[int, dict[bytes, bytes]] = {}

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
            elif isinstance(ev, h2.events.StreamEnded):
                h = self.heads.pop(ev.stream_id, {})
                print(f"request {h.get(b':authority', b'').decode()} {h.get(b':path', b'').decode()}", flush=True)
                body = f"{self.name} {h.get(b':path', b'').decode()} " \
                       f"end-user={h.get(b'end-user', b'').decode()}".encode()
                self.conn.send_headers(ev.stream_id, [(b":status", b"200"), (b"content-length", str(len(body)).encode())])
                self.conn.send_data(ev.stream_id, body, end_stream=True)
        self.transport.write(self.conn.data_to_send())


async def serve(name: str) -> None:
    from grpclib.server import Server

    server = Server([Echo(name)], codec=RawCodec())
    await server.start("0.0.0.0", 50051)
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: PlainH2(name), "0.0.0.0", 8081)
    print("h2 apps ready", flush=True)
    await asyncio.Event().wait()


async def grpc_call(host: str, port: int, metadata: dict[str, str]) -> dict[str, Any]:
    import hashlib

    from grpclib.client import Channel, UnaryUnaryMethod

    ch = Channel(host, port, codec=RawCodec())
    body = b"hello"
    if "x-send" in metadata:  # a large request
        body = bytes(range(256)) * (int(metadata.pop("x-send")) // 256)
    try:
        call = UnaryUnaryMethod(ch, METHOD, bytes, bytes)  # type: ignore[arg-type]
        try:
            reply = await call(body, metadata=metadata or None, timeout=15)
            if "x-size" in metadata:
                return {"status": 0, "size": len(reply) - 64,
                        "checksum_ok": reply[:64].decode() == hashlib.sha256(body).hexdigest()}
            return {"status": 0, "reply": reply.decode()}
        except GRPCError as e:
            return {"status": e.status.value, "message": e.message or ""}
    finally:
        ch.close()


def get(url: str, headers: dict[str, str]) -> dict[str, Any]:
    u = urlsplit(url)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    with socket.create_connection((u.hostname, u.port or 80), timeout=15) as s:
        conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", (u.path or "/").encode()),
                              (b":authority", u.netloc.encode())]
                          + [(k.encode(), v.encode()) for k, v in headers.items()], end_stream=True)
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
                elif isinstance(ev, h2.events.DataReceived):
                    out["body"] += ev.data.decode()
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    if isinstance(ev, h2.events.StreamReset):
                        out["reset"] = ev.error_code
                    return out
            s.sendall(conn.data_to_send())


def main(argv: list[str]) -> None:
    if argv[0] == "serve":
        asyncio.run(serve(argv[1]))
        return
    kv = dict(a.split("=", 1) for a in (argv[3:] if argv[0] == "grpc" else argv[2:]))
    if argv[0] == "grpc":
        print(json.dumps(asyncio.run(grpc_call(argv[1], int(argv[2]), kv))))
    else:
        print(json.dumps(get(argv[1], kv)))


if __name__ == "__main__":
    main(sys.argv[1:])
