"""Bookinfo services on loopback, without the mesh: JSON shapes, versions, failures, headers, HTML."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from e2e_support import Recorder, StartApp
from meshlet.e2e.apps.bookinfo import details, productpage, ratings, reviews
from meshlet.e2e.apps.bookinfo.common import (
    ConfigError,
    ServiceSettings,
    forward_headers,
)
from meshlet.e2e.apps.bookinfo.page import render_productpage

REVIEW1 = "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"
DEAD_URL = "http://127.0.0.1:9"  # discard port: nothing listens, connection refused at once


def settings(**kw: str) -> ServiceSettings:
    return ServiceSettings(host="127.0.0.1", port=0, pod_name=kw.pop("pod_name", "test-pod"), **kw)


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers or {}) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, object]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers or {}) as r:
        return r.status, await r.json(content_type=None)


async def test_details_json(start_app: StartApp) -> None:
    base = await start_app(details.build_app(settings()))
    status, body = await get_json(f"{base}/details/0")
    assert status == 200
    assert body == {
        "id": 0, "author": "William Shakespeare", "year": 1595, "type": "paperback", "pages": 200,
        "publisher": "PublisherA", "language": "English", "ISBN-10": "1234567890", "ISBN-13": "123-1234567890",
    }
    assert await get_json(f"{base}/details/abc") == (400, {"error": "please provide numeric product id"})
    assert await get_json(f"{base}/health") == (200, {"status": "Details is healthy"})


async def test_ratings_json_and_post(start_app: StartApp) -> None:
    base = await start_app(ratings.build_app(settings()))
    assert await get_json(f"{base}/ratings/0") == (200, {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})
    assert (await get_json(f"{base}/ratings/x"))[0] == 400
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/ratings/7", data=b'{"Reviewer1": 1}') as r:
            assert r.status == 200
        async with s.post(f"{base}/ratings/7", data=b"not json") as r:
            assert r.status == 400
    assert await get_json(f"{base}/ratings/7") == (200, {"id": 7, "ratings": {"Reviewer1": 1}})


@pytest.mark.parametrize(
    ("version", "rating"),
    [("v1", None), ("v2", [{"stars": 5, "color": "black"}, {"stars": 4, "color": "black"}]),
     ("v3", [{"stars": 5, "color": "red"}, {"stars": 4, "color": "red"}])],
)
async def test_reviews_versions(start_app: StartApp, version: str, rating: list | None) -> None:
    ratings_url = await start_app(ratings.build_app(settings()))
    base = await start_app(reviews.build_app(settings(version=version, ratings_url=ratings_url, pod_name=f"reviews-{version}-1")))
    status, body = await get_json(f"{base}/reviews/0")
    assert status == 200
    assert isinstance(body, dict)
    assert body["id"] == "0"
    assert body["podname"] == f"reviews-{version}-1"
    assert body["clustername"] == "null"
    assert body["version"] == version
    assert [r["reviewer"] for r in body["reviews"]] == ["Reviewer1", "Reviewer2"]
    assert body["reviews"][0]["text"] == REVIEW1
    if rating is None:
        assert all("rating" not in r for r in body["reviews"])
    else:
        assert [r["rating"] for r in body["reviews"]] == rating


async def test_reviews_ratings_down(start_app: StartApp) -> None:
    base = await start_app(reviews.build_app(settings(version="v2", ratings_url=DEAD_URL)))
    status, body = await get_json(f"{base}/reviews/0")
    assert status == 200
    assert isinstance(body, dict)
    assert [r["rating"] for r in body["reviews"]] == [{"error": "Ratings service is currently unavailable"}] * 2


async def test_reviews_forwards_end_user(start_app: StartApp) -> None:
    rec = Recorder({"id": 0, "ratings": {"Reviewer1": 3, "Reviewer2": 2}})
    ratings_url = await start_app(rec.app())
    base = await start_app(reviews.build_app(settings(version="v3", ratings_url=ratings_url)))
    status, body = await get_json(f"{base}/reviews/0", {"end-user": "jason", "x-request-id": "rid-1", "x-other": "no"})
    assert status == 200 and isinstance(body, dict)
    assert body["reviews"][0]["rating"] == {"stars": 3, "color": "red"}
    path, headers = rec.requests[0]
    assert path == "/ratings/0"
    assert headers["end-user"] == "jason"
    assert headers["x-request-id"] == "rid-1"
    assert "x-other" not in headers


async def bookinfo(start_app: StartApp, version: str = "v3", **overrides: str) -> str:
    ratings_url = overrides.get("ratings_url") or await start_app(ratings.build_app(settings()))
    details_url = overrides.get("details_url") or await start_app(details.build_app(settings()))
    reviews_url = overrides.get("reviews_url") or await start_app(
        reviews.build_app(settings(version=version, ratings_url=ratings_url)))
    return await start_app(productpage.build_app(
        settings(details_url=details_url, reviews_url=reviews_url, ratings_url=ratings_url)))


async def test_productpage_html(start_app: StartApp) -> None:
    base = await bookinfo(start_app, "v3")
    status, ctype, html = await get(f"{base}/productpage")
    assert status == 200 and ctype.startswith("text/html")
    assert "The Comedy of Errors" in html
    assert "Book Details" in html and "<dt>ISBN-10:</dt>1234567890" in html
    assert "Book Reviews" in html and REVIEW1 in html
    assert '<font color="red">' in html
    assert html.count("glyphicon-star\"") == 9  # 5 + 4 full stars
    assert (await get(f"{base}/health"))[2] == "Product page is healthy"
    assert (await get(f"{base}/"))[0] == 200


async def test_productpage_upstreams_down(start_app: StartApp) -> None:
    base = await bookinfo(start_app, details_url=DEAD_URL, reviews_url=DEAD_URL)
    status, _, html = await get(f"{base}/productpage")
    assert status == 200
    assert "Error fetching product details!" in html
    assert "Sorry, product details are currently unavailable for this book." in html
    assert "Error fetching product reviews!" in html
    assert "Sorry, product reviews are currently unavailable for this book." in html
    assert await get_json(f"{base}/api/v1/products/0/reviews") == (
        500, {"error": "Sorry, product reviews are currently unavailable for this book."})


async def test_productpage_retries_reviews_once(start_app: StartApp) -> None:
    rec = Recorder({"error": "boom"}, status=503)
    base = await bookinfo(start_app, reviews_url=await start_app(rec.app()))
    assert await get_json(f"{base}/api/v1/products/0/reviews") == (
        503, {"error": "Sorry, product reviews are currently unavailable for this book."})
    assert len(rec.requests) == 2


async def test_productpage_api(start_app: StartApp) -> None:
    base = await bookinfo(start_app, "v2")
    status, products = await get_json(f"{base}/api/v1/products")
    assert status == 200 and isinstance(products, list) and products[0]["title"] == "The Comedy of Errors"
    status, detail = await get_json(f"{base}/api/v1/products/0")
    assert status == 200 and isinstance(detail, dict) and detail["ISBN-13"] == "123-1234567890"
    status, rev = await get_json(f"{base}/api/v1/products/0/reviews")
    assert status == 200 and isinstance(rev, dict) and rev["version"] == "v2"
    assert rev["reviews"][1]["rating"] == {"stars": 4, "color": "black"}
    assert await get_json(f"{base}/api/v1/products/0/ratings") == (200, {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})
    assert (await get_json(f"{base}/api/v1/products/abc"))[0] == 400


async def test_end_user_reaches_reviews_and_ratings(start_app: StartApp) -> None:
    ratings_rec = Recorder({"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})
    ratings_url = await start_app(ratings_rec.app())
    reviews_url = await start_app(reviews.build_app(settings(version="v2", ratings_url=ratings_url)))
    base = await bookinfo(start_app, ratings_url=ratings_url, reviews_url=reviews_url)
    await get(f"{base}/productpage", {"end-user": "jason", "x-b3-traceid": "abc"})
    assert ratings_rec.requests[0][1]["end-user"] == "jason"
    assert ratings_rec.requests[0][1]["x-b3-traceid"] == "abc"
    # the login cookie sets end-user too, as Bookinfo's session does
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:  # unsafe: IP host
        async with s.post(f"{base}/login", data={"username": "jason2"}, allow_redirects=False) as r:
            assert r.status == 302
        async with s.get(f"{base}/productpage") as r:
            assert "jason2" in await r.text()
    assert ratings_rec.requests[-1][1]["end-user"] == "jason2"


def test_render_escapes_upstream_text() -> None:
    html = render_productpage(
        product=None, details_status=200, details={"type": "<script>"}, reviews_status=200,
        reviews={"reviews": [{"reviewer": "<b>x</b>", "text": "t", "rating": {"stars": 2, "color": "red\"x"}}]},
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>x</b>" not in html
    assert 'color="red&quot;x"' in html


def test_settings_from_env() -> None:
    s = ServiceSettings.from_env({"BOOKINFO_PORT": "1234", "POD_NAME": "p", "SERVICES_DOMAIN": "bookinfo.svc",
                                  "RATINGS_URL": "http://127.0.0.1:5/", "SERVICE_VERSION": "v3"})
    assert (s.port, s.pod_name, s.version) == (1234, "p", "v3")
    assert s.details_url == "http://details.bookinfo.svc:9080"
    assert s.ratings_url == "http://127.0.0.1:5"
    assert ServiceSettings.from_env({"HOSTNAME": "h"}).pod_name == "h"
    with pytest.raises(ConfigError, match="BOOKINFO_PORT"):
        ServiceSettings.from_env({"BOOKINFO_PORT": "x"})


def test_forward_headers_subset() -> None:
    assert forward_headers({"end-user": "a", "x-request-id": "b", "host": "c"}) == {"end-user": "a", "x-request-id": "b"}


def test_reviews_flavor_env_overrides() -> None:
    assert reviews.ReviewsFlavor.for_version("v1", {}) == reviews.ReviewsFlavor(False, "black")
    assert reviews.ReviewsFlavor.for_version("v3", {}).ratings_timeout_s == 2.5
    assert reviews.ReviewsFlavor.for_version("v1", {"ENABLE_RATINGS": "true", "STAR_COLOR": "blue"}) == \
        reviews.ReviewsFlavor(True, "blue")


async def test_productpage_times_out_slow_reviews_twice(start_app: StartApp) -> None:
    calls: list[float] = []

    async def slow(request: web.Request) -> web.Response:
        calls.append(asyncio.get_running_loop().time())
        await asyncio.sleep(1.0)  # well past the 0.2 s timeout; short so clean-up does not wait long
        return web.json_response({})

    slow_app = web.Application()
    slow_app.router.add_get("/reviews/{id}", slow)
    reviews_url = await start_app(slow_app)
    details_url = await start_app(details.build_app(settings()))
    timeouts = productpage.UpstreamTimeouts(details_s=1.0, reviews_s=0.2, reviews_tries=2)
    base = await start_app(productpage.build_app(settings(details_url=details_url, reviews_url=reviews_url),
                                                 timeouts))
    status, _, html = await get(f"{base}/productpage")
    assert status == 200
    assert "Book Details" in html and "Error fetching product reviews!" in html
    assert len(calls) == 2
