"""The flaky gRPC sample on loopback (no mesh): every other call fails with UNAVAILABLE; the caller tallies."""
from __future__ import annotations

import socket

import pytest
from aiohttp import ClientSession
from e2e_support import StartApp
from grpclib.server import Server
from meshlet.e2e.apps.emojivoto.common import ConfigError
from meshlet.e2e.apps.flakygrpc.app import FlakyEmoji, Settings, caller_app, main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_caller_sees_every_other_call_fail(start_app: StartApp) -> None:
    service = FlakyEmoji()
    server = Server([service])
    port = free_port()
    await server.start("127.0.0.1", port)
    try:
        base = await start_app(caller_app(Settings(flaky=("127.0.0.1", port))))
        async with ClientSession() as http:
            async with http.get(f"{base}/call?n=6") as resp:
                assert resp.status == 200
                assert await resp.json() == {"ok": 3, "errors": {"UNAVAILABLE": 3}}
            async with http.get(f"{base}/call?n=0") as resp:
                assert resp.status == 400 and "n must be 1..1000" in (await resp.json())["error"]
            async with http.get(f"{base}/ping") as resp:
                assert resp.status == 200
        assert service.calls == 6
    finally:
        server.close()
        await server.wait_closed()


def test_settings_and_usage_errors() -> None:
    assert Settings.from_env({"FLAKY_ADDR": "x.y:9"}).flaky == ("x.y", 9)
    with pytest.raises(ConfigError, match="FLAKY_ADDR must be host:port"):
        Settings.from_env({"FLAKY_ADDR": "nope"})
    assert main(["bogus"]) == 2
