"""Per-request route decisions on a parsed request head (pure, protocol-independent).

`RequestView` reads what the profile's matchers need from a `RequestHead` (header
values only for the names some route uses); `select` finds the first matching route;
`choose_backend` draws a weighted backend; the builders produce the upstream head
(rewrite, header operations) and the responses the proxy answers itself (404, redirect,
direct response, fault abort, CORS preflight).
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import replace

from .errors import REASONS
from .http1 import RequestHead
from .profile import Backend, Cors, DirectResponse, HeaderOps, MatchKind, Profile, Redirect, RequestMatch, Route


class RequestView:
    __slots__ = ("head", "path", "query", "method", "authority", "port", "headers", "_params")

    def __init__(self, head: RequestHead, authority: str, port: int, names: frozenset[str]) -> None:
        self.head = head
        target = head.target.decode("latin-1")
        path, _, query = target.partition("?")
        self.path = path
        self.query = query
        self.method = head.method.decode("latin-1")
        self.authority = authority
        self.port = port
        headers: dict[str, str] = {}
        if names:
            for name, value in head.headers:
                n = name.decode("latin-1").lower()
                if n in names:
                    v = value.decode("latin-1")
                    headers[n] = headers[n] + "," + v if n in headers else v
        self.headers = headers
        self._params: dict[str, str] | None = None

    @property
    def params(self) -> dict[str, str]:
        if self._params is None:
            from urllib.parse import parse_qsl

            self._params = {}
            for k, v in parse_qsl(self.query, keep_blank_values=True):
                self._params.setdefault(k, v)
        return self._params


def matches(m: RequestMatch, v: RequestView) -> bool:
    if m.port and m.port != v.port:
        return False
    if m.path is not None and not m.path.test(v.path):
        return False
    if m.method is not None and not m.method.test(v.method):
        return False
    if m.authority is not None and not m.authority.test(v.authority.rpartition(":")[0] or v.authority) \
            and not m.authority.test(v.authority):
        return False
    if m.scheme is not None and not m.scheme.test("http"):
        return False
    for h in m.headers:
        if not h.test(v.headers.get(h.name)):
            return False
    if m.query_params:
        params = v.params
        for q in m.query_params:
            if not q.test(params.get(q.name)):
                return False
    return True


def select(profile: Profile, v: RequestView) -> tuple[Route, RequestMatch | None] | None:
    """The first route matching the request and the match that did; None: no route (404)."""
    for r in profile.routes:
        if not r.matches:
            return r, None
        for m in r.matches:
            if matches(m, v):
                return r, m
    return None


def choose_backend(route: Route, r: float) -> Backend:
    """Weighted choice with `r` uniform in [0, 1): share = weight / sum of weights."""
    cum = route.cum_weights
    if len(cum) == 1:
        return route.backends[0]
    i = bisect_right(cum, int(r * cum[-1]))
    return route.backends[min(i, len(cum) - 1)]


# === the upstream head ===

def apply_ops(headers: list[tuple[bytes, bytes]], ops: HeaderOps) -> list[tuple[bytes, bytes]]:
    if ops.remove:
        headers = [(n, v) for n, v in headers if n.lower() not in ops.remove]
    return headers + list(ops.set) + list(ops.add)


def upstream_head(head: RequestHead, route: Route, match: RequestMatch | None, backend: Backend | None,
                  v: RequestView) -> RequestHead:
    """The request as it goes to the backend: rewrite, then route and backend header operations."""
    rw = route.rewrite
    if rw is None and not route.request_ops and (backend is None or not backend.request_ops):
        return head
    target = head.target
    headers = head.headers
    host = head.host
    if rw is not None:
        path = v.path
        if rw.pattern is not None:
            path = rw.pattern.sub(rw.substitution, path)
        elif rw.uri:
            if match is not None and match.path is not None and match.path.kind is MatchKind.PREFIX:
                rest = path[len(match.path.value):]
                path = rw.uri.rstrip("/") + rest if rw.uri.endswith("/") and rest.startswith("/") else rw.uri + rest
            else:
                path = rw.uri
        target = (path + ("?" + v.query if v.query else "")).encode("latin-1", "replace")
        if rw.authority:
            host = rw.authority.encode("latin-1", "replace")
            headers = [(n, host if n.lower() == b"host" else val) for n, val in headers]
    if route.request_ops:
        headers = apply_ops(headers, route.request_ops)
    if backend is not None and backend.request_ops:
        headers = apply_ops(headers, backend.request_ops)
    return replace(head, target=target, headers=headers, host=host)


def response_head_ops(raw: bytes, ops: tuple[HeaderOps, ...]) -> bytes:
    """A raw response head (ending CRLF CRLF) with header operations applied."""
    lines = raw[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name, value.strip()))
    for o in ops:
        headers = apply_ops(headers, o)
    return b"\r\n".join([lines[0]] + [n + b": " + v for n, v in headers]) + b"\r\n\r\n"


# === responses the proxy makes ===

def response(status: int, *, headers: tuple[tuple[str, str], ...] = (), body: bytes = b"",
             error: str = "", close: bool = False) -> bytes:
    head = [f"HTTP/1.1 {status} {REASONS.get(status, _REASONS.get(status, 'Status'))}"]
    if error:
        head.append(f"meshlet-proxy-error: {error}")
    for k, val in headers:
        head.append(f"{k}: {val}")
    if status not in (204, 304) and not 100 <= status < 200:
        head.append(f"content-length: {len(body)}")
    else:
        body = b""
    if close:
        head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "replace") + body


_REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 303: "See Other", 307: "Temporary Redirect",
            308: "Permanent Redirect", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
            418: "I'm a teapot", 429: "Too Many Requests", 500: "Internal Server Error"}


def not_found(close: bool) -> bytes:
    return response(404, error="no route", body=b"no route\n", headers=(("content-type", "text/plain"),),
                    close=close)


def abort(status: int, close: bool) -> bytes:
    return response(status, error="fault injected", body=b"fault filter abort\n",
                    headers=(("content-type", "text/plain"),), close=close)


def direct(d: DirectResponse, close: bool) -> bytes:
    return response(d.status, body=d.body, close=close)


def redirect(rd: Redirect, v: RequestView, match: RequestMatch | None, close: bool) -> bytes:
    host = rd.authority or v.head.host.decode("latin-1") or v.authority
    bare = host.rpartition(":")[0] if ":" in host and not host.endswith("]") else host
    if rd.port:
        host = f"{bare}:{rd.port}"
    elif rd.derive == 1:  # FROM_PROTOCOL_DEFAULT: the scheme's default port, left out
        host = bare
    elif rd.derive == 2:  # FROM_REQUEST_PORT
        host = f"{bare}:{v.port}"
    path = v.path
    if rd.uri:
        if match is not None and match.path is not None and match.path.kind is MatchKind.PREFIX:
            path = rd.uri + path[len(match.path.value):]
        else:
            path = rd.uri
    location = f"{rd.scheme or 'http'}://{host}{path}" + (f"?{v.query}" if v.query and not rd.uri else "")
    return response(rd.status, headers=(("location", location),), close=close)


def cors_origin(cors: Cors, v: RequestView) -> str | None:
    origin = v.headers.get("origin")
    if origin is None or not any(o.test(origin) for o in cors.allow_origins):
        return None
    return origin


def cors_preflight(cors: Cors, v: RequestView, close: bool) -> bytes | None:
    """The proxy's answer to a preflight whose origin is allowed; None: not a preflight for us."""
    if v.method != "OPTIONS" or "access-control-request-method" not in v.headers:
        return None
    origin = cors_origin(cors, v)
    if origin is None:
        return None
    headers = [("access-control-allow-origin", origin)]
    if cors.allow_methods:
        headers.append(("access-control-allow-methods", cors.allow_methods))
    if cors.allow_headers:
        headers.append(("access-control-allow-headers", cors.allow_headers))
    if cors.max_age:
        headers.append(("access-control-max-age", str(cors.max_age)))
    if cors.allow_credentials:
        headers.append(("access-control-allow-credentials", "true"))
    return response(200, headers=tuple(headers), close=close)


def cors_response_ops(cors: Cors, origin: str) -> HeaderOps:
    set_ = [(b"access-control-allow-origin", origin.encode("latin-1", "replace"))]
    if cors.expose_headers:
        set_.append((b"access-control-expose-headers", cors.expose_headers.encode("latin-1")))
    if cors.allow_credentials:
        set_.append((b"access-control-allow-credentials", b"true"))
    return HeaderOps(tuple(set_), (), frozenset(n for n, _ in set_))
