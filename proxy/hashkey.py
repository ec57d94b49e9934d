"""Consistent-hash keys of requests (DestinationRule `loadBalancer.consistentHash`; pure)."""
from __future__ import annotations

from typing import Any

from .routes import RequestView


def hash_key(hk: Any, v: RequestView, source_ip: str) -> bytes | None:
    """The consistent-hash key of a request (`hk`: a `profile.HashKey`; None: the request lacks
    it, choose by the cluster's fallback)."""
    if hk.header:
        for name, value in v.head.headers:
            if name.lower() == hk.header:
                return value
        return None
    if hk.cookie:
        return cookie_value(v.head.headers, hk.cookie)
    if hk.query_param:
        got = v.params.get(hk.query_param)
        return None if got is None else got.encode("latin-1", "replace")
    if hk.source_ip:
        return source_ip.encode()
    return None


def cookie_value(headers: list[tuple[bytes, bytes]], name: str) -> bytes | None:
    """The value of cookie `name` in the request's Cookie headers (None: not there)."""
    want = name.encode("latin-1", "replace")
    for n, value in headers:
        if n.lower() == b"cookie":
            for part in value.split(b";"):
                k, _, val = part.strip().partition(b"=")
                if k == want:
                    return val
    return None


def sticky_cookie(name: str, value: str, ttl: float, path: str) -> tuple[bytes, bytes]:
    """The Set-Cookie header of a generated consistent-hash cookie (httpCookie with a ttl)."""
    text = f"{name}={value}; Max-Age={max(int(ttl), 1)}" + (f"; Path={path}" if path else "") + "; HttpOnly"
    return b"set-cookie", text.encode("latin-1", "replace")
