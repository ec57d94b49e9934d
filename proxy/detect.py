"""Protocol detection over a connection's first bytes (pure)."""
from __future__ import annotations

import enum
import re


class Detected(enum.Enum):
    HTTP1 = "http1"
    HTTP2 = "http2"
    OPAQUE = "opaque"
    NEED_MORE = "need_more"


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_REQUEST_LINE = re.compile(rb"[A-Z]{1,16} [^ \r\n]+ HTTP/1\.[01]\r?\n")
# A prefix of a request line: method, then target, then "HTTP/1.x\r".
_PARTIAL_LINE = re.compile(rb"[A-Z]{1,16}( ([^ \r\n]+( (H(T(T(P(/(1(\.([01]\r?)?)?)?)?)?)?)?)?)?)?)?")
MAX_REQUEST_LINE = 8192


def detect(buf: bytes) -> Detected:
    """HTTP/1.x request line → HTTP1; the h2 preface → HTTP2; anything else → OPAQUE.

    NEED_MORE while the bytes so far are still a prefix of something HTTP-like.
    """
    if not buf:
        return Detected.NEED_MORE
    if buf[:len(H2_PREFACE)] == H2_PREFACE[:len(buf)]:
        return Detected.HTTP2 if len(buf) >= len(H2_PREFACE) else Detected.NEED_MORE
    nl = buf.find(b"\n", 0, MAX_REQUEST_LINE + 1)
    if nl >= 0:
        return Detected.HTTP1 if _REQUEST_LINE.fullmatch(buf, 0, nl + 1) else Detected.OPAQUE
    if len(buf) > MAX_REQUEST_LINE:
        return Detected.OPAQUE
    return Detected.NEED_MORE if _PARTIAL_LINE.fullmatch(buf) else Detected.OPAQUE


def is_tls_client_hello(first: bytes) -> bool:
    """A TLS record of type handshake (0x16) starts a TLS ClientHello."""
    return first[:1] == b"\x16"
