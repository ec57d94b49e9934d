"""The gRPC server of the benchmark: a unary echo (grpclib, raw bytes, one process).

`python bench/grpc_echo.py --host 0.0.0.0 --port 50051` serves `/bench.Echo/Echo`,
which answers each request message with the same bytes. Messages are not
decoded (a pass-through codec), so the server costs the same for every peer and
no generated code is needed. `request_body()` is one gRPC-framed request (the
bytes oha and h2load POST); `call_status()` makes one real call and returns the
grpc-status (a peer is measured only once it answers 0).
"""
from __future__ import annotations

import argparse
import asyncio
import struct
import sys
from typing import Any

ECHO_PATH = "/bench.Echo/Echo"
MESSAGE = b"\x0a\x1fhello from the meshlet benchmark"
"""A small protobuf-shaped message (field 1, a 31-byte string)."""
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


def request_body(message: bytes = MESSAGE) -> bytes:
    """One length-prefixed gRPC message (not compressed)."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def _codec() -> Any:
    from grpclib.encoding.base import CodecBase

    class RawCodec(CodecBase):
        __content_subtype__ = "proto"

        def encode(self, message: Any, message_type: Any) -> bytes:
            return bytes(message)

        def decode(self, data: bytes, message_type: Any) -> Any:
            return data

    return RawCodec()


class _Echo:
    def __mapping__(self) -> dict[str, Any]:
        from grpclib.const import Cardinality, Handler

        return {ECHO_PATH: Handler(self.echo, Cardinality.UNARY_UNARY, bytes, bytes)}

    async def echo(self, stream: Any) -> None:
        message = await stream.recv_message()
        await stream.send_message(message)


async def serve(host: str, port: int) -> None:
    from grpclib.server import Server

    server = Server([_Echo()], codec=_codec())
    await server.start(host, port)
    print(f"grpc echo listening on {host}:{port}", flush=True)
    await server.wait_closed()


def call_status(host: str, port: int, timeout: float = 5.0) -> int | None:
    """grpc-status of one echo call (0 = OK), None when nothing answers gRPC."""
    from grpclib.client import Channel
    from grpclib.const import Cardinality
    from grpclib.exceptions import GRPCError

    async def once() -> int:
        channel = Channel(host, port, codec=_codec())
        try:
            async with channel.request(ECHO_PATH, Cardinality.UNARY_UNARY, bytes, bytes, timeout=timeout) as stream:
                await stream.send_message(MESSAGE, end=True)
                reply = await stream.recv_message()
                await stream.recv_trailing_metadata()
                return 0 if reply == MESSAGE else 2
        except GRPCError as exc:
            return int(exc.status.value)
        finally:
            channel.close()

    try:
        return asyncio.run(once())
    except (TimeoutError, OSError, ConnectionError):
        return None
    except Exception:  # noqa: BLE001 - boundary: an h2/protocol error means "not a working gRPC path yet"
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="grpc_echo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=50051)
    args = ap.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
