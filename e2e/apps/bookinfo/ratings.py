"""Bookinfo `ratings`: `GET /ratings/<id>` returns each reviewer's stars.

Run: `python -m meshlet.e2e.apps.bookinfo.ratings`. `SERVICE_VERSION=v-faulty`
answers half the requests with 503, like Bookinfo's faulty ratings; `POST
/ratings/<id>` with a JSON object replaces a product's ratings in memory (v1).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from meshlet.e2e.apps.bookinfo.common import (
    SETTINGS_KEY,
    ServiceSettings,
    json_response,
    parse_product_id,
    serve,
)

DEFAULT_RATINGS: dict[str, int] = {"Reviewer1": 5, "Reviewer2": 4}


@dataclass
class RatingsStore:
    """Ratings added with POST, per product id; the rest get DEFAULT_RATINGS."""

    added: dict[int, dict[str, Any]] = field(default_factory=dict)
    max_products: int = 1000

    def get(self, product_id: int) -> dict[str, Any]:
        return {"id": product_id, "ratings": self.added.get(product_id, dict(DEFAULT_RATINGS))}

    def put(self, product_id: int, ratings: dict[str, Any]) -> dict[str, Any]:
        if product_id not in self.added and len(self.added) >= self.max_products:
            raise ValueError("too many products with custom ratings")
        self.added[product_id] = ratings
        return self.get(product_id)


STORE_KEY: web.AppKey[RatingsStore] = web.AppKey("ratings_store", RatingsStore)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "Ratings is healthy"})


async def get_ratings(request: web.Request) -> web.Response:
    product_id = parse_product_id(request.match_info["product_id"])
    if product_id is None:
        return json_response({"error": "please provide numeric product ID"}, status=400)
    if request.app[SETTINGS_KEY].version == "v-faulty" and random.random() <= 0.5:
        return json_response({"error": "Service unavailable"}, status=503)
    return json_response(request.app[STORE_KEY].get(product_id))


async def post_ratings(request: web.Request) -> web.Response:
    product_id = parse_product_id(request.match_info["product_id"])
    if product_id is None:
        return json_response({"error": "please provide numeric product ID"}, status=400)
    try:
        ratings = json.loads(await request.read())
    except ValueError:
        ratings = None
    if not isinstance(ratings, dict):
        return json_response({"error": "please provide valid ratings JSON"}, status=400)
    try:
        return json_response(request.app[STORE_KEY].put(product_id, ratings))
    except ValueError as exc:
        return json_response({"error": str(exc)}, status=507)


def build_app(settings: ServiceSettings) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[SETTINGS_KEY] = settings
    app[STORE_KEY] = RatingsStore()
    app.router.add_get("/health", health)
    app.router.add_get("/ratings/{product_id}", get_ratings)
    app.router.add_post("/ratings/{product_id}", post_ratings)
    return app


def main() -> None:
    serve("ratings", build_app)


if __name__ == "__main__":
    main()
