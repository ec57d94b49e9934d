"""The proxy's errors, mapped once to an HTTP status at the server boundary.

    ProxyError
     ├── ConnectError      could not reach the endpoint (502)
     ├── PeerIdentityError the endpoint presented the wrong identity (502)
     ├── NoEndpoints       the service exists but has no endpoint (503)
     ├── ProtocolError     the peer sent malformed HTTP (400 for a client)
     ├── LoopDetected      a connection to the proxy itself (502)
     └── IdentityError     certificate could not be obtained or used
"""
from __future__ import annotations


class ProxyError(Exception):
    status = 502


class ConnectError(ProxyError):
    status = 502


class PeerIdentityError(ConnectError):
    status = 502


class NoEndpoints(ProxyError):
    status = 503


class ProtocolError(ProxyError):
    status = 400


class LoopDetected(ProxyError):
    status = 502


class Blocked(ProxyError):
    status = 502


class Overflow(ProxyError):
    status = 503


class Timeout(ProxyError):
    status = 504


class IdentityError(ProxyError):
    status = 503


REASONS = {400: "Bad Request", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def error_response(status: int, message: str, *, close: bool) -> bytes:
    """A proxy-generated response, marked with `meshlet-proxy-error`."""
    text = message.replace("\r", " ").replace("\n", " ")[:200]
    body = (text + "\n").encode("utf-8", "replace")
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        f"content-type: text/plain\r\ncontent-length: {len(body)}\r\n"
        f"meshlet-proxy-error: {text}\r\n"
    )
    if close:
        head += "connection: close\r\n"
    return head.encode("latin-1", "replace") + b"\r\n" + body
