"""HTTP/2 header blocks ⇄ the proxy's `RequestHead` and proxy-made responses (pure)."""
from __future__ import annotations

from ..errors import ProtocolError
from ..http1 import RequestHead

HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade",
                        b"host", b"http2-settings"))
"""Not forwarded from HTTP/2 to HTTP/2 (`host` travels as `:authority`)."""


def request_head(headers: list[tuple[bytes, bytes]]) -> RequestHead:
    """The route-matching view of a request's header block: `:authority` is the host.

    Raises ProtocolError naming what is missing or malformed."""
    method = path = authority = b""
    scheme = b""
    regular: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif name == b":scheme":
                scheme = value
            elif name != b":protocol":
                raise ProtocolError(f"unknown pseudo-header {name.decode('latin-1')}")
        elif name == b"host":
            authority = authority or value
        else:
            regular.append((name, value))
    if not method:
        raise ProtocolError("request without :method")
    if method != b"CONNECT" and (not path or not scheme):
        raise ProtocolError("request without :path or :scheme")
    if authority:
        regular.append((b"host", authority))
    return RequestHead(method=method, target=path, version="2", headers=regular, keep_alive=True, upgrade=False,
                       chunked=False, host=authority)


def upstream_headers(head: RequestHead, scheme: bytes = b"http") -> list[tuple[bytes, bytes]]:
    """The header block of a (possibly rewritten) head as it goes upstream over HTTP/2."""
    out = [(b":method", head.method), (b":scheme", scheme), (b":path", head.target)]
    if head.host:
        out.append((b":authority", head.host))
    for name, value in head.headers:
        n = name.lower()
        if n in HOP_BY_HOP or (n == b"te" and value.lower() != b"trailers"):
            continue
        out.append((n, value))
    return out


def response_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A response header block to forward (hop-by-hop fields dropped)."""
    return [(n, v) for n, v in headers if n not in HOP_BY_HOP]


def status_of(headers: list[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b":status":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def from_http1(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A complete HTTP/1 response (as `Reply.make` builds them) as status, h2 headers and body."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 502
    headers = [(b":status", str(status).encode())]
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        n = name.strip().lower()
        if n and n not in HOP_BY_HOP and n != b"content-length":
            headers.append((n, value.strip()))
    headers.append((b"content-length", str(len(body)).encode()))
    return status, headers, body


def error_headers(status: int, message: str, body_len: int) -> list[tuple[bytes, bytes]]:
    text = message.replace("\r", " ").replace("\n", " ")[:200]
    return [(b":status", str(status).encode()), (b"content-type", b"text/plain"),
            (b"content-length", str(body_len).encode()),
            (b"meshlet-proxy-error", text.encode("latin-1", "replace"))]
