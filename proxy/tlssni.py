"""The SNI of a TLS ClientHello (pure): what tls_routes match on."""
from __future__ import annotations


class SniError(ValueError):
    """The bytes are not a TLS ClientHello we can read."""


class NeedMore(SniError):
    """A prefix of a ClientHello: read more bytes and try again."""


MAX_HELLO = 16 * 1024 + 5


def _u(buf: bytes, at: int, n: int, end: int) -> int:
    if at + n > end:
        raise SniError("ClientHello field runs past its end")
    return int.from_bytes(buf[at:at + n], "big")


def parse_sni(buf: bytes) -> str:
    """The server name of the ClientHello starting `buf` ("" when it has none).

    Raises `NeedMore` while `buf` is a truncated record, `SniError` for anything that is not a
    ClientHello (never anything else). Only the first record is read (a hello split over
    several records is rare enough to be treated as "no SNI").
    """
    if len(buf) < 5:
        if buf and buf[0] != 0x16:
            raise SniError("not a TLS handshake record")
        raise NeedMore("TLS record header incomplete")
    if buf[0] != 0x16:
        raise SniError("not a TLS handshake record")
    if buf[1] != 3:
        raise SniError(f"unknown TLS record version {buf[1]}.{buf[2]}")
    rec_len = int.from_bytes(buf[3:5], "big")
    if rec_len > MAX_HELLO:
        raise SniError(f"TLS record too long ({rec_len})")
    end = 5 + rec_len
    if len(buf) < end:
        raise NeedMore("TLS record incomplete")
    if _u(buf, 5, 1, end) != 1:
        raise SniError("handshake message is not a ClientHello")
    hello_end = 9 + _u(buf, 6, 3, end)
    if hello_end > end:
        return ""  # hello continues in the next record: SNI not readable here
    at = 9 + 2 + 32  # version, random
    at += 1 + _u(buf, at, 1, hello_end)  # session id
    at += 2 + _u(buf, at, 2, hello_end)  # cipher suites
    at += 1 + _u(buf, at, 1, hello_end)  # compression methods
    if at == hello_end:
        return ""  # no extensions
    ext_end = at + 2 + _u(buf, at, 2, hello_end)
    if ext_end > hello_end:
        raise SniError("ClientHello extensions run past the hello")
    at += 2
    while at < ext_end:
        typ, length = _u(buf, at, 2, ext_end), _u(buf, at + 2, 2, ext_end)
        at += 4
        if at + length > ext_end:
            raise SniError("ClientHello extension runs past the extensions")
        if typ == 0:
            return _server_name(buf, at, at + length)
        at += length
    return ""


def _server_name(buf: bytes, at: int, end: int) -> str:
    list_end = at + 2 + _u(buf, at, 2, end)
    if list_end > end:
        raise SniError("server_name list runs past its extension")
    at += 2
    while at < list_end:
        kind, n = _u(buf, at, 1, list_end), _u(buf, at + 1, 2, list_end)
        at += 3
        if at + n > list_end:
            raise SniError("server name runs past its list")
        if kind == 0:
            try:
                return buf[at:at + n].decode("ascii").lower().rstrip(".")
            except UnicodeDecodeError:
                raise SniError("server name is not ASCII") from None
        at += n
    return ""
