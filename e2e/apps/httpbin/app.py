"""httpbin-like test server (Istio's httpbin sample, the parts meshes are tested with).

Routes: `/status/{codes}` (one code, or a comma list answered at random, as
httpbin), `/delay/{seconds}` (capped at 10 s), `/headers`, `/ip`, `/get`,
`/anything[/...]` (any method), `/` and `/stats` (this process's request
counters: what a mirror received). `POST /admin/fail/{code}` makes this
process answer every other request with `code` (0 turns it off): an endpoint
that keeps failing, for outlier-detection tests. Every response carries `x-version` (from
`SERVICE_VERSION`) and `x-pod` (from `POD_NAME`) so split and mirror tests
can tell backends apart.
"""
from __future__ import annotations

import asyncio
import math
import os
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEFAULT_PORT = 8000
MAX_DELAY_S = 10.0
MAX_STATUS_CODES = 20


class ConfigError(ValueError):
    """An environment variable has a value the server cannot use."""


@dataclass(frozen=True)
class HttpbinSettings:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    version: str = "v1"
    pod_name: str = "unknown"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HttpbinSettings:
        env = os.environ if env is None else env
        text = env.get("HTTPBIN_PORT") or env.get("PORT") or str(DEFAULT_PORT)
        try:
            port = int(text)
        except ValueError:
            raise ConfigError(f"HTTPBIN_PORT must be an integer, got {text!r}") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"HTTPBIN_PORT must be in 0..65535, got {port}")
        return cls(host=env.get("HTTPBIN_HOST", "0.0.0.0"), port=port,
                   version=env.get("SERVICE_VERSION") or "v1",
                   pod_name=env.get("POD_NAME") or env.get("HOSTNAME") or "unknown")


@dataclass
class Chaos:
    """A status every request gets instead of its answer (0: behave)."""

    fail_status: int = 0


@dataclass
class RequestStats:
    """Requests this process served, by path (bounded: at most `max_paths` distinct paths)."""

    total: int = 0
    by_path: Counter[str] = field(default_factory=Counter)
    max_paths: int = 1000

    def record(self, path: str) -> None:
        self.total += 1
        if path in self.by_path or len(self.by_path) < self.max_paths:
            self.by_path[path] += 1

    def dump(self) -> dict[str, Any]:
        return {"total": self.total, "paths": dict(self.by_path)}


class BadRequest(ValueError):
    """A path parameter httpbin cannot use; the message says which."""


def parse_status_codes(text: str) -> list[int]:
    """`"418"` -> [418]; `"500,200"` -> [500, 200]; BadRequest for anything else."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or len(parts) > MAX_STATUS_CODES:
        raise BadRequest(f"give 1..{MAX_STATUS_CODES} status codes")
    codes = []
    for part in parts:
        if not part.isdigit() or not 100 <= int(part) <= 599:
            raise BadRequest(f"invalid status code {part!r}: want 100..599")
        codes.append(int(part))
    return codes


def parse_delay(text: str) -> float:
    """Seconds to wait, capped at MAX_DELAY_S (httpbin caps at 10)."""
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"invalid delay {text!r}: want seconds") from None
    if math.isnan(value) or value < 0:
        raise BadRequest(f"invalid delay {text!r}: want seconds >= 0")
    return min(value, MAX_DELAY_S)


def client_ip(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if peer else ""


def request_echo(request: web.Request, body: bytes = b"") -> dict[str, Any]:
    """httpbin's `/get` / `/anything` JSON."""
    out: dict[str, Any] = {
        "args": dict(request.query),
        "headers": _headers(request),
        "origin": client_ip(request),
        "url": str(request.url),
    }
    if request.path.startswith("/anything"):
        out["method"] = request.method
        out["data"] = body.decode("utf-8", errors="replace")
    return out


def _headers(request: web.Request) -> dict[str, str]:
    """Request headers with httpbin's Title-Case names (repeated headers joined by commas)."""
    merged: dict[str, str] = {}
    for name, value in request.headers.items():
        key = "-".join(p.capitalize() for p in name.split("-"))
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    return merged


STATS_KEY: web.AppKey[RequestStats] = web.AppKey("stats", RequestStats)
SETTINGS_KEY: web.AppKey[HttpbinSettings] = web.AppKey("settings", HttpbinSettings)
CHAOS_KEY: web.AppKey[Chaos] = web.AppKey("chaos", Chaos)


@web.middleware
async def stamp(request: web.Request, handler: Any) -> web.StreamResponse:
    """Count the request, turn BadRequest into 400 and label the response with version and pod."""
    settings = request.app[SETTINGS_KEY]
    internal = request.path == "/stats" or request.path.startswith("/admin/")
    if not internal:
        request.app[STATS_KEY].record(request.path)
    fail = request.app[CHAOS_KEY].fail_status
    try:
        resp = web.Response(status=fail, text="failing on purpose\n") if fail and not internal \
            else await handler(request)
    except BadRequest as exc:
        resp = web.json_response({"error": str(exc)}, status=400)
    except web.HTTPException as exc:
        resp = exc
    resp.headers["x-version"] = settings.version
    resp.headers["x-pod"] = settings.pod_name
    return resp


async def index(request: web.Request) -> web.Response:
    s = request.app[SETTINGS_KEY]
    return web.Response(text=f"httpbin {s.version} ({s.pod_name}): /status/{{code}} /delay/{{s}} /headers "
                             f"/ip /get /anything /stats\n")


async def status(request: web.Request) -> web.Response:
    code = random.choice(parse_status_codes(request.match_info["codes"]))
    if code == 418:
        return web.Response(status=418, text="-=[ teapot ]=-\n")
    if code in (204, 304) or code < 200:
        return web.Response(status=code)
    return web.Response(status=code, text="")


async def delay(request: web.Request) -> web.Response:
    await asyncio.sleep(parse_delay(request.match_info["seconds"]))
    return web.json_response(request_echo(request))


async def headers(request: web.Request) -> web.Response:
    return web.json_response({"headers": _headers(request)})


async def ip(request: web.Request) -> web.Response:
    return web.json_response({"origin": client_ip(request)})


async def get(request: web.Request) -> web.Response:
    return web.json_response(request_echo(request))


async def anything(request: web.Request) -> web.Response:
    return web.json_response(request_echo(request, await request.read()))


async def stats(request: web.Request) -> web.Response:
    s = request.app[SETTINGS_KEY]
    return web.json_response({**request.app[STATS_KEY].dump(), "version": s.version, "pod": s.pod_name})


async def admin_fail(request: web.Request) -> web.Response:
    text = request.match_info["code"]
    code = 0 if text == "0" else parse_status_codes(text)[0]
    request.app[CHAOS_KEY].fail_status = code
    return web.json_response({"fail_status": code})


def build_app(settings: HttpbinSettings) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024, middlewares=[stamp])
    app[SETTINGS_KEY] = settings
    app[STATS_KEY] = RequestStats()
    app[CHAOS_KEY] = Chaos()
    app.router.add_get("/", index)
    app.router.add_route("*", "/status/{codes}", status)
    app.router.add_get("/delay/{seconds}", delay)
    app.router.add_get("/headers", headers)
    app.router.add_get("/ip", ip)
    app.router.add_get("/get", get)
    app.router.add_get("/stats", stats)
    app.router.add_post("/admin/fail/{code}", admin_fail)
    app.router.add_route("*", "/anything", anything)
    app.router.add_route("*", "/anything/{tail:.*}", anything)
    return app


def main() -> None:
    from meshlet.controller import log

    logger = log.setup("httpbin")
    try:
        settings = HttpbinSettings.from_env()
    except ConfigError as exc:
        logger.error("config.invalid", error=str(exc))
        raise SystemExit(2) from None
    logger.info("serve.started", host=settings.host, port=settings.port, version=settings.version)
    web.run_app(build_app(settings), host=settings.host, port=settings.port, print=None,
                access_log_format='%a "%r" %s %b %Tf x-request-id=%{x-request-id}i')
