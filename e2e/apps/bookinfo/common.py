"""What the four Bookinfo services share: settings, header propagation, upstream calls, serving.

Each service reads a `ServiceSettings` once from the environment (the names
Istio's Bookinfo uses, plus `<NAME>_URL` overrides so tests can point a
service at loopback ports) and passes it down explicitly.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from meshlet.controller import log

DEFAULT_PORT = 9080

# Headers every Bookinfo service copies from the request it serves to the
# requests it makes (the union of productpage.py's and reviews' lists).
PROPAGATED_HEADERS: tuple[str, ...] = (
    "x-request-id",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "sw8",
    "end-user",
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
)


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class ServiceSettings:
    """Where a Bookinfo service listens, who it is and where its upstreams are."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    pod_name: str = "unknown"
    """POD_NAME (set by the runtime) or HOSTNAME (Kubernetes); reported by reviews as `podname`."""
    cluster_name: str = "null"
    """CLUSTER_NAME; Bookinfo's reviews prints Java's `null` when unset."""
    version: str = "v1"
    """SERVICE_VERSION (reviews: v1 no ratings, v2 black stars, v3 red stars)."""
    details_url: str = "http://details:9080"
    reviews_url: str = "http://reviews:9080"
    ratings_url: str = "http://ratings:9080"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServiceSettings:
        env = os.environ if env is None else env
        port_text = env.get("BOOKINFO_PORT") or env.get("PORT") or str(DEFAULT_PORT)
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"BOOKINFO_PORT must be an integer, got {port_text!r}") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"BOOKINFO_PORT must be in 0..65535, got {port}")
        domain = env.get("SERVICES_DOMAIN")
        suffix = f".{domain}" if domain else ""

        def upstream(name: str) -> str:
            explicit = env.get(f"{name.upper()}_URL")
            if explicit:
                return explicit.rstrip("/")
            host = env.get(f"{name.upper()}_HOSTNAME") or name
            return f"http://{host}{suffix}:{DEFAULT_PORT}"

        return cls(
            host=env.get("BOOKINFO_HOST", "0.0.0.0"),
            port=port,
            pod_name=env.get("POD_NAME") or env.get("HOSTNAME") or "unknown",
            cluster_name=env.get("CLUSTER_NAME") or "null",
            version=env.get("SERVICE_VERSION") or "v1",
            details_url=upstream("details"),
            reviews_url=upstream("reviews"),
            ratings_url=upstream("ratings"),
        )


def forward_headers(incoming: Mapping[str, str]) -> dict[str, str]:
    """The subset of `incoming` a service passes on to its upstreams."""
    return {name: incoming[name] for name in PROPAGATED_HEADERS if name in incoming}


def resource_url(base: str, kind: str, product_id: str) -> str:
    """`http://details:9080` + `details` + `0` -> `http://details:9080/details/0`."""
    return f"{base}/{kind}/{quote(str(product_id), safe='')}"


def parse_product_id(text: str) -> int | None:
    """A non-negative product id from a path segment, or None when it is not one."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 0 else None


async def fetch_json(
    session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], timeout_s: float
) -> tuple[int, Any | None]:
    """GET `url`; (status, decoded JSON body) on a 200, (status or 500, None) otherwise.

    Connection errors, timeouts and bodies that are not JSON all count as a
    failed call, as they do in Bookinfo; cancellation propagates.
    """
    try:
        async with session.get(url, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                await resp.read()
                return resp.status, None
            return 200, json.loads(await resp.read())
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return 500, None


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def client_session_ctx(app: web.Application) -> Any:
    """aiohttp cleanup context owning the app's one ClientSession (bounded pool)."""

    async def ctx(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=64, ttl_dns_cache=5)
        async with aiohttp.ClientSession(connector=connector) as session:
            app[SESSION_KEY] = session
            yield

    return ctx


SESSION_KEY: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
SETTINGS_KEY: web.AppKey[ServiceSettings] = web.AppKey("settings", ServiceSettings)


def serve(component: str, build: Any) -> None:
    """Entry point of `python -m meshlet.e2e.apps.bookinfo.<component>`."""
    logger = log.setup(f"bookinfo-{component}")
    try:
        settings = ServiceSettings.from_env()
    except ConfigError as exc:
        logger.error("config.invalid", error=str(exc))
        raise SystemExit(2) from None
    logger.info("serve.started", host=settings.host, port=settings.port, version=settings.version,
                pod=settings.pod_name)
    web.run_app(build(settings), host=settings.host, port=settings.port, print=None,
                access_log_format='%a "%r" %s %b %Tf end-user=%{end-user}i x-request-id=%{x-request-id}i')
