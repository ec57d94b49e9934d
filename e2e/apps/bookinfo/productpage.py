"""Bookinfo `productpage`: the HTML page and the JSON API in front of details and reviews.

Run: `python -m meshlet.e2e.apps.bookinfo.productpage`. Calls
`details:9080/details/0` (3 s timeout) and `reviews:9080/reviews/0` (3 s
timeout, two tries: Bookinfo's deliberate "bug" the fault-injection task relies
on), forwarding `end-user` (from the request header, or from the `user` cookie
set by `POST /login`) and the tracing headers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from meshlet.e2e.apps.bookinfo.common import (
    SESSION_KEY,
    SETTINGS_KEY,
    ServiceSettings,
    client_session_ctx,
    fetch_json,
    forward_headers,
    json_response,
    resource_url,
    serve,
)
from meshlet.e2e.apps.bookinfo.page import PRODUCTS, render_index, render_productpage

DETAILS_ERROR = "Sorry, product details are currently unavailable for this book."
REVIEWS_ERROR = "Sorry, product reviews are currently unavailable for this book."
RATINGS_ERROR = "Sorry, product ratings are currently unavailable for this book."
USER_COOKIE = "user"


@dataclass(frozen=True)
class UpstreamTimeouts:
    """productpage's own client timeouts (seconds), Bookinfo's values by default."""

    details_s: float = 3.0
    reviews_s: float = 3.0
    reviews_tries: int = 2
    ratings_s: float = 3.0


TIMEOUTS_KEY: web.AppKey[UpstreamTimeouts] = web.AppKey("timeouts", UpstreamTimeouts)


def outgoing_headers(request: web.Request) -> dict[str, str]:
    headers = forward_headers(request.headers)
    user = request.cookies.get(USER_COOKIE)
    if user:
        headers["end-user"] = user
    return headers


async def get_details(app: web.Application, product_id: str, headers: dict[str, str]) -> tuple[int, Any]:
    session: aiohttp.ClientSession = app[SESSION_KEY]
    url = resource_url(app[SETTINGS_KEY].details_url, "details", product_id)
    status, body = await fetch_json(session, url, headers, app[TIMEOUTS_KEY].details_s)
    return (200, body) if status == 200 else (status, {"error": DETAILS_ERROR})


async def get_reviews(app: web.Application, product_id: str, headers: dict[str, str]) -> tuple[int, Any]:
    session: aiohttp.ClientSession = app[SESSION_KEY]
    timeouts = app[TIMEOUTS_KEY]
    url = resource_url(app[SETTINGS_KEY].reviews_url, "reviews", product_id)
    status = 500
    for _ in range(max(1, timeouts.reviews_tries)):
        status, body = await fetch_json(session, url, headers, timeouts.reviews_s)
        if status == 200:
            return 200, body
    return status, {"error": REVIEWS_ERROR}


async def get_ratings(app: web.Application, product_id: str, headers: dict[str, str]) -> tuple[int, Any]:
    session: aiohttp.ClientSession = app[SESSION_KEY]
    url = resource_url(app[SETTINGS_KEY].ratings_url, "ratings", product_id)
    status, body = await fetch_json(session, url, headers, app[TIMEOUTS_KEY].ratings_s)
    return (200, body) if status == 200 else (status, {"error": RATINGS_ERROR})


async def index(request: web.Request) -> web.Response:
    return web.Response(text=render_index(), content_type="text/html")


async def health(request: web.Request) -> web.Response:
    return web.Response(text="Product page is healthy")


async def productpage(request: web.Request) -> web.Response:
    headers = outgoing_headers(request)
    details_status, details = await get_details(request.app, "0", headers)
    reviews_status, reviews = await get_reviews(request.app, "0", headers)
    html = render_productpage(
        product=PRODUCTS[0],
        details_status=details_status,
        details=details,
        reviews_status=reviews_status,
        reviews=reviews,
        user=request.cookies.get(USER_COOKIE, ""),
    )
    return web.Response(text=html, content_type="text/html")


async def api_products(request: web.Request) -> web.Response:
    return json_response(list(PRODUCTS))


async def api_product(request: web.Request) -> web.Response:
    status, body = await get_details(request.app, request.match_info["product_id"], outgoing_headers(request))
    return json_response(body, status=status)


async def api_reviews(request: web.Request) -> web.Response:
    status, body = await get_reviews(request.app, request.match_info["product_id"], outgoing_headers(request))
    return json_response(body, status=status)


async def api_ratings(request: web.Request) -> web.Response:
    status, body = await get_ratings(request.app, request.match_info["product_id"], outgoing_headers(request))
    return json_response(body, status=status)


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    user = str(form.get("username") or "").strip()
    resp = web.HTTPFound(request.headers.get("Referer") or "/productpage")
    if user:
        resp.set_cookie(USER_COOKIE, user[:64], httponly=True)
    raise resp


async def logout(request: web.Request) -> web.Response:
    resp = web.HTTPFound(request.headers.get("Referer") or "/productpage")
    resp.del_cookie(USER_COOKIE)
    raise resp


def build_app(settings: ServiceSettings, timeouts: UpstreamTimeouts | None = None) -> web.Application:
    app = web.Application(client_max_size=16 * 1024)
    app[SETTINGS_KEY] = settings
    app[TIMEOUTS_KEY] = timeouts or UpstreamTimeouts()
    app.cleanup_ctx.append(client_session_ctx(app))
    app.router.add_get("/", index)
    app.router.add_get("/index.html", index)
    app.router.add_get("/health", health)
    app.router.add_get("/productpage", productpage)
    app.router.add_post("/login", login)
    app.router.add_get("/logout", logout)
    app.router.add_get("/api/v1/products", api_products)
    app.router.add_get("/api/v1/products/{product_id}", api_product)
    app.router.add_get("/api/v1/products/{product_id}/reviews", api_reviews)
    app.router.add_get("/api/v1/products/{product_id}/ratings", api_ratings)
    return app


def main() -> None:
    serve("productpage", build_app)


if __name__ == "__main__":
    main()
