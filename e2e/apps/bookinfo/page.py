"""HTML of Bookinfo's product page, rendered by a pure function (no I/O).

The markup follows Bookinfo's `productpage.html`: a details column ("Book
Details" or "Error fetching product details!") and a reviews column ("Book
Reviews" with glyphicon stars in the rating's colour, or "Error fetching
product reviews!" with the error text).
"""
from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

PRODUCTS: tuple[dict[str, Any], ...] = (
    {
        "id": 0,
        "title": "The Comedy of Errors",
        "descriptionHtml": (
            '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: '
            "The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest "
            "and one of his most farcical comedies, with a major part of the humour coming from slapstick "
            "and mistaken identity, in addition to puns and word play."
        ),
    },
)

DETAIL_FIELDS: tuple[tuple[str, str], ...] = (
    ("Type", "type"),
    ("Pages", "pages"),
    ("Publisher", "publisher"),
    ("Language", "language"),
    ("ISBN-10", "ISBN-10"),
    ("ISBN-13", "ISBN-13"),
)


def _text(value: Any) -> str:
    return escape("" if value is None else str(value))


def render_stars(rating: Mapping[str, Any]) -> str:
    stars = rating.get("stars")
    if isinstance(stars, int) and not isinstance(stars, bool) and stars:
        stars = max(0, min(5, stars))
        full = '<span class="glyphicon glyphicon-star"></span>\n' * stars
        empty = '<span class="glyphicon glyphicon-star-empty"></span>\n' * (5 - stars)
        return f'<font color="{_text(rating.get("color", "black"))}">\n{full}{empty}</font>\n'
    if rating.get("error"):
        return f"<p><i>{_text(rating['error'])}</i></p>\n"
    return ""


def _details_column(status: int, details: Mapping[str, Any] | None) -> str:
    if status == 200 and details is not None:
        rows = "".join(f"<dt>{label}:</dt>{_text(details.get(key))}\n" for label, key in DETAIL_FIELDS)
        return f'<h4 class="text-center text-primary">Book Details</h4>\n<dl>\n{rows}</dl>\n'
    error = f"<p>{_text(details.get('error'))}</p>\n" if details else ""
    return f'<h4 class="text-center text-primary">Error fetching product details!</h4>\n{error}'


def _reviews_column(status: int, reviews: Mapping[str, Any] | None) -> str:
    if status == 200 and reviews is not None:
        parts = ['<h4 class="text-center text-primary">Book Reviews</h4>\n']
        for review in reviews.get("reviews") or []:
            if not isinstance(review, Mapping):
                continue
            rating = review.get("rating")
            parts.append(
                "<blockquote>\n"
                f"<p>{_text(review.get('text'))}</p>\n"
                f"<small>{_text(review.get('reviewer'))}</small>\n"
                f"{render_stars(rating) if isinstance(rating, Mapping) else ''}"
                "</blockquote>\n"
            )
        return "".join(parts)
    error = f"<p>{_text(reviews.get('error'))}</p>\n" if reviews else ""
    return f'<h4 class="text-center text-primary">Error fetching product reviews!</h4>\n{error}'


def render_productpage(
    *,
    product: Mapping[str, Any] | None,
    details_status: int,
    details: Mapping[str, Any] | None,
    reviews_status: int,
    reviews: Mapping[str, Any] | None,
    user: str = "",
) -> str:
    """The whole page; `details`/`reviews` are the upstream JSON or Bookinfo's error objects."""
    product = product or {"title": "Unknown product", "descriptionHtml": ""}
    who = (
        f'<p class="navbar-text navbar-right">{_text(user)} ( <a href="logout">sign out</a> )</p>'
        if user
        else '<form method="post" action="login" class="navbar-form navbar-right">'
        '<input type="text" name="username" placeholder="User Name">'
        '<button type="submit">Sign in</button></form>'
    )
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>Simple Bookstore App</title>\n</head>\n<body>\n"
        '<nav class="navbar navbar-inverse navbar-static-top"><div class="container">'
        f'<a class="navbar-brand" href="#">BookInfo Sample</a>{who}</div></nav>\n'
        '<div class="container-fluid">\n<div class="row"><div class="col-md-12">\n'
        f'<h3 class="text-center text-primary">{_text(product.get("title"))}</h3>\n'
        # descriptionHtml is our own constant markup (Bookinfo renders it unescaped too)
        f"<p>Summary: {product.get('descriptionHtml', '')}</p>\n"
        "</div></div>\n<div class=\"row\">\n"
        f'<div class="col-md-6">\n{_details_column(details_status, details)}</div>\n'
        f'<div class="col-md-6">\n{_reviews_column(reviews_status, reviews)}</div>\n'
        "</div>\n</div>\n</body>\n</html>\n"
    )


def render_index() -> str:
    return (
        "<!DOCTYPE html>\n<html>\n<head><title>Simple Bookstore App</title></head>\n<body>\n"
        "<h3>Hello! This is a simple bookstore application consisting of three services as shown below</h3>\n"
        "<ul><li>productpage: calls details and reviews</li><li>details</li>"
        "<li>reviews: v1 without ratings, v2 black stars, v3 red stars (calls ratings)</li><li>ratings</li></ul>\n"
        '<p>Click on one of the links below to auto generate a request to the backend as a real user '
        'or a tester</p>\n<p><a href="/productpage?u=normal">Normal user</a></p>\n'
        '<p><a href="/productpage?u=test">Test user</a></p>\n</body>\n</html>\n'
    )
