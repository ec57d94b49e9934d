import pytest
from hypothesis import given
from hypothesis import strategies as st
from meshlet.destination.errors import InvalidPath
from meshlet.destination.targets import (
    ExternalTarget,
    IpTarget,
    ServiceTarget,
    parse_path,
)


@pytest.mark.parametrize(
    "path, expected",
    [
        ("reviews", ServiceTarget("caller", "reviews", 80)),
        ("reviews:9080", ServiceTarget("caller", "reviews", 9080)),
        ("reviews.bookinfo", ServiceTarget("bookinfo", "reviews", 80)),
        ("reviews.bookinfo:9080", ServiceTarget("bookinfo", "reviews", 9080)),
        ("reviews.bookinfo.svc:9080", ServiceTarget("bookinfo", "reviews", 9080)),
        ("reviews.bookinfo.svc.cluster.local:9080", ServiceTarget("bookinfo", "reviews", 9080)),
        ("Reviews.Bookinfo.svc.cluster.local.:9080", ServiceTarget("bookinfo", "reviews", 9080)),
        ("198.19.0.7:9080", IpTarget("198.19.0.7", 9080)),
        ("198.19.0.7", IpTarget("198.19.0.7", 80)),
        ("[fd00::1]:443", IpTarget("fd00::1", 443)),
        ("www.example.com:443", ExternalTarget("www.example.com", 443)),
        ("reviews.bookinfo.svc.other.domain:80", ExternalTarget("reviews.bookinfo.svc.other.domain", 80)),
        ("my_host:8080", ExternalTarget("my_host", 8080)),
    ],
)
def test_parse_path(path, expected):
    assert parse_path(path, "caller") == expected


def test_short_name_without_context_uses_default_namespace():
    assert parse_path("reviews:9080") == ServiceTarget("default", "reviews", 9080)


@pytest.mark.parametrize(
    "path, problem",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("reviews:http", "port 'http'"),
        ("reviews:0", "port '0'"),
        ("reviews:65536", "port '65536'"),
        (":80", "host is empty"),
        ("rev iews:80", "not a valid host name label"),
        ("a..b:80", "not a valid host name label"),
        ("a/b:80", "not a valid host name label"),
        ("[fd00::1", "unclosed"),
        ("x" * 600, "too long"),
    ],
)
def test_malformed_paths(path, problem):
    with pytest.raises(InvalidPath, match=problem):
        parse_path(path, "caller")


@given(st.text(max_size=80))
def test_any_text_parses_or_raises_invalid_path(text):
    try:
        parse_path(text, "ns")
    except InvalidPath:
        pass


def test_non_ascii_digits_are_not_a_port():
    with pytest.raises(InvalidPath, match="port"):
        parse_path("web:²")
