"""Bookinfo `details`: `GET /details/<id>` returns the book's bibliographic facts.

Run: `python -m meshlet.e2e.apps.bookinfo.details` (port 9080, `BOOKINFO_PORT` overrides).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from meshlet.e2e.apps.bookinfo.common import (
    SETTINGS_KEY,
    ServiceSettings,
    json_response,
    parse_product_id,
    serve,
)


def book_details(product_id: int) -> dict[str, Any]:
    """The one book Bookinfo knows, under whatever id was asked for (as Bookinfo does)."""
    return {
        "id": product_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "Details is healthy"})


async def details(request: web.Request) -> web.Response:
    product_id = parse_product_id(request.match_info["product_id"])
    if product_id is None:
        return json_response({"error": "please provide numeric product id"}, status=400)
    return json_response(book_details(product_id))


def build_app(settings: ServiceSettings) -> web.Application:
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app.router.add_get("/health", health)
    app.router.add_get("/details/{product_id}", details)
    return app


def main() -> None:
    serve("details", build_app)


if __name__ == "__main__":
    main()
