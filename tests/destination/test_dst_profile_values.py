"""Pure value conversions of the profile translators."""
import pytest
from meshlet.destination.errors import InvalidRule
from meshlet.destination.hosts import (
    canonical_host,
    egress_allows,
    host_matches,
    visible,
)
from meshlet.destination.values import duration_ms, percent


@pytest.mark.parametrize("text, ms", [
    ("5s", 5000), ("250ms", 250), ("1.5s", 1500), ("1m30s", 90_000), ("2h", 7_200_000), ("0", 0), ("0s", 0),
    ("500us", 1), (3, 3000), (0.25, 250), (None, None), ("", None),
])
def test_durations(text, ms):
    assert duration_ms(text, "f") == ms


@pytest.mark.parametrize("text", ["soon", "5", "5 s", "s", "-1s", "1s5"])
def test_bad_durations_name_the_field(text):
    with pytest.raises(InvalidRule, match="^timeout: "):
        duration_ms(text, "timeout")


def test_percentages():
    class P:
        value = 12.5
    assert percent(P(), "p") == 12.5 and percent(None, "p", default=100.0) == 100.0 and percent(30, "p") == 30.0
    with pytest.raises(InvalidRule, match="between 0 and 100"):
        percent(101, "p")


@pytest.mark.parametrize("host, ns, out", [
    ("reviews", "shop", "reviews.shop.svc.cluster.local"),
    ("reviews.shop.svc", "x", "reviews.shop.svc.cluster.local"),
    ("Example.COM.", "x", "example.com"),
    ("*", "x", "*"), ("*.example.com", "x", "*.example.com"),
])
def test_canonical_hosts(host, ns, out):
    assert canonical_host(host, ns) == out


def test_wildcards_export_and_egress():
    assert host_matches("*.example.com", "a.b.example.com") and not host_matches("*.example.com", "example.com")
    assert host_matches("*", "anything") and not host_matches("a.com", "b.com")
    assert visible([], "a", "b") and visible(["."], "a", "a") and not visible(["."], "a", "b")
    assert visible(["b"], "a", "b") and not visible(["c"], "a", "b")
    fqdn = "web.shop.svc.cluster.local"
    assert egress_allows(["./*"], "shop", "shop", fqdn) and not egress_allows(["./*"], "other", "shop", fqdn)
    assert egress_allows(["*/web.shop.svc.cluster.local"], "x", "shop", fqdn)
    assert egress_allows(["shop/web"], "x", "shop", fqdn)  # short name relative to the pattern's namespace
    assert not egress_allows(["~/*"], "shop", "shop", fqdn)
