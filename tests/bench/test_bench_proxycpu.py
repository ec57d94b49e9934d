"""bench/proxycpu.py: the loopback proxy pair (real sockets, real mTLS between the proxies)
serves every request and measures per-request CPU; retried 503s keep their connection."""
from __future__ import annotations

import pytest

from bench.proxycpu import MODES, measure


@pytest.mark.parametrize("mode", MODES)
async def test_the_pair_serves_every_mode(mode: str) -> None:
    r = await measure(mode, requests=60, warmup=20)
    assert r.mode == mode and r.requests == 60
    assert r.cpu_us_per_request > 0 and r.instructions_per_request is None
    # one client connection in, one mTLS connection between the proxies, one to the app:
    # retried 503s (retry-5xx) go back to the pool instead of reconnecting
    assert (r.inbound_connections, r.app_connections) == (1, 1)


async def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        await measure("nope")
