"""emojivoto `web`: the HTTP front end, calling `emoji` and `voting` over gRPC.

Run: `python -m meshlet.e2e.apps.emojivoto.web` (WEB_PORT 8080, EMOJISVC_HOST
emoji-svc:8080, VOTINGSVC_HOST voting-svc:8080). Routes, as the original:
`GET /api/list` (JSON list of {shortcode, unicode}), `GET /api/vote?choice=:emoji:`
(200; 400 for a missing or unknown choice; 500 when voting fails, always for
`:doughnut:`), `GET /api/leaderboard` ({shortcode, unicode, votes} by votes),
`GET /` (a small HTML page) and `GET /ping` (readiness, no upstream call).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from grpclib import GRPCError
from grpclib.exceptions import StreamTerminatedError
from meshlet.e2e.apps.emojivoto.common import ConfigError, WebSettings
from meshlet.e2e.apps.emojivoto.pb import emojivoto_pb as pb

UPSTREAM_ERRORS = (GRPCError, StreamTerminatedError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class Upstreams:
    emoji: pb.EmojiServiceStub
    voting: pb.VotingServiceStub
    timeout_s: float


SETTINGS_KEY: web.AppKey[WebSettings] = web.AppKey("settings", WebSettings)
UPSTREAMS_KEY: web.AppKey[Upstreams] = web.AppKey("upstreams", Upstreams)


def describe(exc: BaseException) -> str:
    """An upstream failure as the JSON error text: `grpc UNKNOWN: ERROR`, `connect: ...`."""
    if isinstance(exc, GRPCError):
        return f"grpc {exc.status.name}: {exc.message or ''}".rstrip(": ")
    if isinstance(exc, asyncio.TimeoutError):
        return "upstream timed out"
    return f"{type(exc).__name__}: {exc}"


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def channels(app: web.Application) -> AsyncIterator[None]:
    from grpclib.client import Channel

    settings = app[SETTINGS_KEY]
    emoji_ch, voting_ch = Channel(*settings.emoji_addr), Channel(*settings.voting_addr)
    app[UPSTREAMS_KEY] = Upstreams(pb.EmojiServiceStub(emoji_ch), pb.VotingServiceStub(voting_ch),
                                   settings.call_timeout_s)
    try:
        yield
    finally:
        emoji_ch.close()
        voting_ch.close()


async def api_list(request: web.Request) -> web.Response:
    up = request.app[UPSTREAMS_KEY]
    try:
        resp = await up.emoji.list_all(pb.ListAllEmojiRequest(), timeout=up.timeout_s)
    except UPSTREAM_ERRORS as exc:
        return error(500, f"emoji: {describe(exc)}")
    return web.json_response([{"shortcode": e.shortcode, "unicode": e.unicode} for e in resp.list])


async def api_vote(request: web.Request) -> web.Response:
    up = request.app[UPSTREAMS_KEY]
    choice = request.query.get("choice", "")
    if not choice:
        return error(400, "emoji choice is required (?choice=:shortcode:)")
    try:
        found = await up.emoji.find_by_shortcode(pb.FindByShortcodeRequest(shortcode=choice), timeout=up.timeout_s)
    except UPSTREAM_ERRORS as exc:
        return error(500, f"emoji: {describe(exc)}")
    if found.emoji is None:
        return error(400, f"choice {choice[:64]!r} is not an emoji we know")
    try:
        await up.voting.vote(pb.VoteRequest(shortcode=choice), timeout=up.timeout_s)
    except UPSTREAM_ERRORS as exc:
        return error(500, f"voting: {describe(exc)}")
    return web.json_response({"shortcode": choice, "unicode": found.emoji.unicode})


async def api_leaderboard(request: web.Request) -> web.Response:
    up = request.app[UPSTREAMS_KEY]
    try:
        results = await up.voting.results(pb.ResultsRequest(), timeout=up.timeout_s)
        emoji = await up.emoji.list_all(pb.ListAllEmojiRequest(), timeout=up.timeout_s)
    except UPSTREAM_ERRORS as exc:
        return error(500, describe(exc))
    unicode = {e.shortcode: e.unicode for e in emoji.list}
    return web.json_response([{"shortcode": r.shortcode, "unicode": unicode.get(r.shortcode, ""), "votes": r.votes}
                              for r in results.results])


async def index(request: web.Request) -> web.Response:
    return web.Response(content_type="text/html", text=(
        "<!DOCTYPE html><html><head><title>Emoji Vote</title></head><body><h1>Emoji Vote</h1>"
        "<p>Vote with <code>/api/vote?choice=:emoji:</code>; see <a href=\"/api/leaderboard\">the leaderboard</a>"
        " and <a href=\"/api/list\">the emoji</a>.</p></body></html>"))


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="pong")


def build_app(settings: WebSettings) -> web.Application:
    app = web.Application(client_max_size=16 * 1024)
    app[SETTINGS_KEY] = settings
    app.cleanup_ctx.append(channels)
    app.router.add_get("/", index)
    app.router.add_get("/ping", ping)
    app.router.add_get("/api/list", api_list)
    app.router.add_get("/api/vote", api_vote)
    app.router.add_get("/api/leaderboard", api_leaderboard)
    return app


def main() -> None:
    from meshlet.controller import log

    logger = log.setup("emojivoto-web")
    try:
        settings = WebSettings.from_env()
    except ConfigError as exc:
        logger.error("config.invalid", error=str(exc))
        raise SystemExit(2) from None
    logger.info("serve.started", port=settings.port, emoji=settings.emoji_addr, voting=settings.voting_addr)
    web.run_app(build_app(settings), host=settings.host, port=settings.port, print=None)


if __name__ == "__main__":
    main()


