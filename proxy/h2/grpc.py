"""gRPC on HTTP/2: status codes, classification, trailers-only responses (pure)."""
from __future__ import annotations

from ..profile import GRPC_RETRY_ON

OK = 0
CANCELLED = 1
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

RETRY_ON = GRPC_RETRY_ON

_HTTP_TO_GRPC = {400: INTERNAL, 401: UNAUTHENTICATED, 403: PERMISSION_DENIED, 404: UNIMPLEMENTED,
                 429: UNAVAILABLE, 502: UNAVAILABLE, 503: UNAVAILABLE, 504: UNAVAILABLE}


def is_grpc(headers: list[tuple[bytes, bytes]]) -> bool:
    """A gRPC request or response: `content-type: application/grpc[+proto|;...]`."""
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(b"application/grpc")
    return False


def status_of(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The `grpc-status` of a header block (None when it has none or it is not a number)."""
    for name, value in headers:
        if name == b"grpc-status":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def classify(http_status: int, grpc_status: int | None) -> str:
    """Linkerd's classification: gRPC status 0 is a success, any other a failure;
    without one, HTTP 5xx (and no response) is a failure."""
    if grpc_status is not None:
        return "success" if grpc_status == OK else "failure"
    return "failure" if http_status >= 500 or http_status == 0 else "success"


def from_http(status: int) -> int:
    """The gRPC status of an HTTP status (gRPC's HTTP-to-gRPC mapping)."""
    return _HTTP_TO_GRPC.get(status, UNKNOWN)


_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


def timeout_of(headers: list[tuple[bytes, bytes]]) -> float | None:
    """The request's `grpc-timeout` in seconds (`1*8DIGIT` + unit H M S m u n); None when it has
    none or it is malformed (a malformed one is ignored, as gRPC servers do)."""
    for name, value in headers:
        if name == b"grpc-timeout":
            digits, unit = value[:-1], value[-1:]
            if not digits.isdigit() or len(digits) > 8 or unit not in _TIMEOUT_UNITS:
                return None
            return int(digits) * _TIMEOUT_UNITS[unit]
    return None


def retry_codes(retry_on: tuple[str, ...] | frozenset[str]) -> frozenset[int]:
    return frozenset(RETRY_ON[c] for c in retry_on if c in RETRY_ON)


def trailers_only(status: int, message: str, *, proxy_error: bool = True) -> list[tuple[bytes, bytes]]:
    """A trailers-only gRPC response: one HEADERS frame (sent with END_STREAM)."""
    text = message.replace("\r", " ").replace("\n", " ")[:200]
    out = [(b":status", b"200"), (b"content-type", b"application/grpc"),
           (b"grpc-status", str(status).encode()),
           (b"grpc-message", percent_encode(text))]
    if proxy_error:
        out.append((b"meshlet-proxy-error", text.encode("latin-1", "replace")))
    return out


def percent_encode(text: str) -> bytes:
    """`grpc-message` encoding: bytes outside printable ASCII, and '%', as %XX."""
    return b"".join(bytes((b,)) if 0x20 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b
                    for b in text.encode("utf-8"))
