"""emojivoto on loopback, without the mesh: gRPC calls with grpclib, the doughnut failure, web and vote-bot."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from e2e_support import StartApp
from grpclib import GRPCError, Status
from grpclib.client import Channel
from grpclib.server import Server
from meshlet.controller.local.spec import DeploymentSpec
from meshlet.controller.model import to_obj
from meshlet.controller.model.loader import load_paths
from meshlet.e2e.apps.emojivoto import EMOJIVOTO_DIR
from meshlet.e2e.apps.emojivoto.common import (
    BotSettings,
    ConfigError,
    GrpcSettings,
    WebSettings,
)
from meshlet.e2e.apps.emojivoto.emoji import EMOJI, EmojiService
from meshlet.e2e.apps.emojivoto.pb import emojivoto_pb as pb
from meshlet.e2e.apps.emojivoto.vote_bot import pick, run_bot
from meshlet.e2e.apps.emojivoto.voting import VotingService
from meshlet.e2e.apps.emojivoto.web import build_app

ServeGrpc = Callable[[Any], Awaitable[int]]


@pytest.fixture
async def serve_grpc() -> AsyncIterator[ServeGrpc]:
    """`port = await serve_grpc(service)`: a real grpclib server on 127.0.0.1:<free port>."""
    servers: list[Server] = []

    async def start(service: Any) -> int:
        server = Server([service])
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return int(server._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


class NullLog:
    def info(self, *a: object, **kw: object) -> None:
        pass

    warning = info


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_emoji_service_over_grpc(serve_grpc: ServeGrpc) -> None:
    port = await serve_grpc(EmojiService())
    channel = Channel("127.0.0.1", port)
    try:
        stub = pb.EmojiServiceStub(channel)
        listed = await stub.list_all(pb.ListAllEmojiRequest(), timeout=10)
        assert len(listed.list) == len(EMOJI) and listed.list[0].shortcode == ":joy:"
        found = await stub.find_by_shortcode(pb.FindByShortcodeRequest(shortcode=":doughnut:"), timeout=10)
        assert found.emoji is not None and found.emoji.unicode == "\U0001F369"
        missing = await stub.find_by_shortcode(pb.FindByShortcodeRequest(shortcode=":nope:"), timeout=10)
        assert missing.emoji is None
    finally:
        channel.close()


async def test_voting_counts_and_doughnut_fails(serve_grpc: ServeGrpc) -> None:
    port = await serve_grpc(VotingService())
    channel = Channel("127.0.0.1", port)
    try:
        stub = pb.VotingServiceStub(channel)
        for code in (":joy:", ":joy:", ":poop:"):
            await stub.vote(pb.VoteRequest(shortcode=code), timeout=10)
        with pytest.raises(GRPCError) as err:
            await stub.vote(pb.VoteRequest(shortcode=":doughnut:"), timeout=10)
        assert err.value.status is Status.UNKNOWN and err.value.message == "ERROR"
        with pytest.raises(GRPCError) as err:
            await stub.vote(pb.VoteRequest(shortcode=":not-an-emoji:"), timeout=10)
        assert err.value.status is Status.INVALID_ARGUMENT
        results = await stub.results(pb.ResultsRequest(), timeout=10)
        assert [(r.shortcode, r.votes) for r in results.results] == [(":joy:", 2), (":poop:", 1)]
    finally:
        channel.close()


async def start_web(start_app: StartApp, serve_grpc: ServeGrpc) -> str:
    emoji_port = await serve_grpc(EmojiService())
    voting_port = await serve_grpc(VotingService())
    settings = WebSettings(host="127.0.0.1", port=0, emoji_addr=("127.0.0.1", emoji_port),
                           voting_addr=("127.0.0.1", voting_port))
    return await start_app(build_app(settings))


async def test_web_list_vote_leaderboard(start_app: StartApp, serve_grpc: ServeGrpc) -> None:
    base = await start_web(start_app, serve_grpc)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/api/list") as r:
            listed = await r.json()
            assert r.status == 200 and {"shortcode": ":joy:", "unicode": "\U0001F602"} in listed
        for choice in (":rocket:", ":rocket:", ":joy:"):
            async with s.get(f"{base}/api/vote", params={"choice": choice}) as r:
                assert r.status == 200, await r.text()
        async with s.get(f"{base}/api/vote", params={"choice": ":doughnut:"}) as r:
            assert r.status == 500 and (await r.json())["error"] == "voting: grpc UNKNOWN: ERROR"
        async with s.get(f"{base}/api/vote", params={"choice": ":unknown:"}) as r:
            assert r.status == 400
        async with s.get(f"{base}/api/vote") as r:
            assert r.status == 400
        async with s.get(f"{base}/api/leaderboard") as r:
            assert await r.json() == [{"shortcode": ":rocket:", "unicode": "\U0001F680", "votes": 2},
                                      {"shortcode": ":joy:", "unicode": "\U0001F602", "votes": 1}]
        async with s.get(f"{base}/") as r:
            assert "Emoji Vote" in await r.text()


async def test_web_reports_an_unreachable_upstream(start_app: StartApp) -> None:
    dead = ("127.0.0.1", free_port())
    base = await start_app(build_app(WebSettings(host="127.0.0.1", port=0, emoji_addr=dead, voting_addr=dead,
                                                 call_timeout_s=5)))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/api/list") as r:
            assert r.status == 500 and (await r.json())["error"].startswith("emoji: ")
        async with s.get(f"{base}/ping") as r:
            assert r.status == 200


async def test_vote_bot_votes_through_web(start_app: StartApp, serve_grpc: ServeGrpc) -> None:
    base = await start_web(start_app, serve_grpc)
    host, port = base.removeprefix("http://").split(":")
    tally = await asyncio.wait_for(run_bot(BotSettings(web=(host, int(port)), rate=50, max_votes=30),
                                           asyncio.Event(), NullLog()), 60)
    assert tally.ok + tally.failed == 30 and tally.ok > 0
    assert set(tally.by_status) <= {200, 500}


def test_pick_sends_some_votes_to_doughnut() -> None:
    import random

    rng = random.Random(7)
    picks = [pick([":joy:", ":doughnut:", ":rocket:"], rng) for _ in range(300)]
    assert 0 < picks.count(":doughnut:") < 300 and ":joy:" in picks


def test_settings() -> None:
    web = WebSettings.from_env({"EMOJISVC_HOST": "emoji-svc.emojivoto:8080", "WEB_PORT": "9000"})
    assert web.emoji_addr == ("emoji-svc.emojivoto", 8080) and web.port == 9000
    assert GrpcSettings.from_env({}).port == 8080
    bot = BotSettings.from_env({"WEB_HOST": "web-svc.emojivoto:80", "VOTE_RATE": "0.5", "VOTE_MAX": "3"})
    assert (bot.web, bot.rate, bot.max_votes) == (("web-svc.emojivoto", 80), 0.5, 3)
    for env, name in (({"VOTE_RATE": "1000"}, "VOTE_RATE"), ({"EMOJISVC_HOST": "nohost"}, "EMOJISVC_HOST"),
                      ({"GRPC_PORT": "x"}, "GRPC_PORT"), ({"VOTE_MAX": "-1"}, "VOTE_MAX")):
        with pytest.raises(ConfigError, match=name):
            (GrpcSettings if name == "GRPC_PORT" else BotSettings if name.startswith("VOTE") else WebSettings
             ).from_env(env)


def test_manifests_load_and_run_locally() -> None:
    resources = load_paths([str(EMOJIVOTO_DIR)])
    services = {r.metadata.name: [(p.name, p.port, p.target_port) for p in r.spec.ports]
                for r in resources if r.kind == "Service"}
    assert services == {"emoji-svc": [("grpc", 8080, 8080)], "voting-svc": [("grpc", 8080, 8080)],
                        "web-svc": [("http", 80, 8080)]}
    assert sorted(r.metadata.name for r in resources if r.kind == "ServiceAccount") == ["emoji", "voting", "web"]
    ns = next(r for r in resources if r.kind == "Namespace")
    assert ns.metadata.name == "emojivoto" and ns.metadata.labels == {"istio-injection": "enabled"}
    modules = {}
    for r in resources:
        if r.kind == "Deployment":
            modules[r.metadata.name] = DeploymentSpec.from_obj(to_obj(r)).containers[0].argv[2]
    assert modules == {"emoji": "meshlet.e2e.apps.emojivoto.emoji", "voting": "meshlet.e2e.apps.emojivoto.voting",
                       "web": "meshlet.e2e.apps.emojivoto.web", "vote-bot": "meshlet.e2e.apps.emojivoto.vote_bot"}


def test_generated_code_is_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(EMOJIVOTO_DIR / "generate.py"), "--check"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_voting_runs_as_a_process() -> None:
    port = free_port()
    env = {**os.environ, "GRPC_HOST": "127.0.0.1", "GRPC_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "meshlet.e2e.apps.emojivoto.voting"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def vote() -> GRPCError:
        deadline = time.monotonic() + 30
        while True:
            channel = Channel("127.0.0.1", port)
            try:
                await pb.VotingServiceStub(channel).vote(pb.VoteRequest(shortcode=":doughnut:"), timeout=5)
                raise AssertionError("voting for :doughnut: succeeded")
            except GRPCError as exc:
                return exc
            except (TimeoutError, OSError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
            finally:
                channel.close()
            await asyncio.sleep(0.1)

    try:
        assert asyncio.run(vote()).status is Status.UNKNOWN
        proc.terminate()
        assert proc.wait(timeout=10) == 0, "SIGTERM is a clean exit"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
