"""Bookinfo `reviews`: `GET /reviews/<id>` returns two reviews, with stars from v2 on.

Run: `python -m meshlet.e2e.apps.bookinfo.reviews` with `SERVICE_VERSION`
v1 (no ratings), v2 (black stars) or v3 (red stars); v2/v3 call
`ratings:9080/ratings/<id>` (timeouts 10 s for black, 2.5 s for red, as in
Bookinfo's LibertyRestEndpoint) and forward `end-user` and the tracing headers.
`ENABLE_RATINGS` and `STAR_COLOR` override the version's defaults as in Bookinfo.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from meshlet.e2e.apps.bookinfo.common import (
    SESSION_KEY,
    SETTINGS_KEY,
    ServiceSettings,
    client_session_ctx,
    fetch_json,
    forward_headers,
    json_response,
    parse_product_id,
    resource_url,
    serve,
)

REVIEWS: tuple[tuple[str, str], ...] = (
    ("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
    ("Reviewer2", "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."),
)
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"


@dataclass(frozen=True)
class ReviewsFlavor:
    """What a reviews version does: whether it shows ratings and in which colour."""

    ratings_enabled: bool
    star_color: str

    @property
    def ratings_timeout_s(self) -> float:
        return 10.0 if self.star_color == "black" else 2.5

    @classmethod
    def for_version(cls, version: str, env: Mapping[str, str] | None = None) -> ReviewsFlavor:
        env = os.environ if env is None else env
        enabled = version in ("v2", "v3")
        color = "red" if version == "v3" else "black"
        if "ENABLE_RATINGS" in env:
            enabled = env["ENABLE_RATINGS"].lower() == "true"
        if env.get("STAR_COLOR"):
            color = env["STAR_COLOR"]
        return cls(ratings_enabled=enabled, star_color=color)


def reviews_body(
    product_id: int,
    settings: ServiceSettings,
    flavor: ReviewsFlavor,
    ratings: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Bookinfo's reviews JSON; `ratings` is ratings' `ratings` object, None when the call failed.

    Adds `version` (not in Bookinfo) so clients can tell v1/v2/v3 apart without
    parsing pod names.
    """
    out: list[dict[str, Any]] = []
    for reviewer, text in REVIEWS:
        review: dict[str, Any] = {"reviewer": reviewer, "text": text}
        if flavor.ratings_enabled:
            stars = ratings.get(reviewer) if ratings is not None else None
            if isinstance(stars, int) and not isinstance(stars, bool):
                review["rating"] = {"stars": stars, "color": flavor.star_color}
            else:
                review["rating"] = {"error": RATINGS_UNAVAILABLE}
        out.append(review)
    return {
        "id": str(product_id),
        "podname": settings.pod_name,
        "clustername": settings.cluster_name,
        "version": settings.version,
        "reviews": out,
    }


FLAVOR_KEY: web.AppKey[ReviewsFlavor] = web.AppKey("flavor", ReviewsFlavor)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "Reviews is healthy"})


async def reviews(request: web.Request) -> web.Response:
    product_id = parse_product_id(request.match_info["product_id"])
    if product_id is None:
        return json_response({"error": "please provide numeric product id"}, status=400)
    settings = request.app[SETTINGS_KEY]
    flavor = request.app[FLAVOR_KEY]
    ratings: Mapping[str, Any] | None = None
    if flavor.ratings_enabled:
        status, body = await fetch_json(
            request.app[SESSION_KEY],
            resource_url(settings.ratings_url, "ratings", str(product_id)),
            forward_headers(request.headers),
            flavor.ratings_timeout_s,
        )
        if status == 200 and isinstance(body, dict) and isinstance(body.get("ratings"), dict):
            ratings = body["ratings"]
    return json_response(reviews_body(product_id, settings, flavor, ratings))


def build_app(settings: ServiceSettings, flavor: ReviewsFlavor | None = None) -> web.Application:
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app[FLAVOR_KEY] = flavor or ReviewsFlavor.for_version(settings.version)
    app.cleanup_ctx.append(client_session_ctx(app))
    app.router.add_get("/health", health)
    app.router.add_get("/reviews/{product_id}", reviews)
    return app


def main() -> None:
    serve("reviews", build_app)


if __name__ == "__main__":
    main()
