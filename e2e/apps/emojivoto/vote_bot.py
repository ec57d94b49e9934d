"""emojivoto `vote-bot`: votes for random emoji through `web` at a bounded rate.

Run: `python -m meshlet.e2e.apps.emojivoto.vote_bot` (WEB_HOST web-svc:80,
VOTE_RATE votes per second, default 2, VOTE_MAX total, default 0 = forever).
About one vote in ten goes to :doughnut: (which always fails), like the
original bot's random picks over the whole list. Logs one line per vote.
"""
from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from meshlet.e2e.apps.emojivoto.common import BotSettings, ConfigError

DOUGHNUT_SHARE = 0.1


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    by_status: dict[int, int] = field(default_factory=dict)

    def record(self, status: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if status == 200:
            self.ok += 1
        else:
            self.failed += 1


def pick(shortcodes: Sequence[str], rng: random.Random) -> str:
    if ":doughnut:" in shortcodes and rng.random() < DOUGHNUT_SHARE:
        return ":doughnut:"
    return rng.choice(list(shortcodes))


async def run_bot(settings: BotSettings, stop: asyncio.Event, log: Any, rng: random.Random | None = None) -> Tally:
    """Vote until `stop` is set or `max_votes` are cast; errors are counted and logged, never fatal."""
    rng = rng or random.Random()
    tally = Tally()
    host, port = settings.web
    base = f"http://{host}:{port}"
    interval = 1.0 / settings.rate
    timeout = aiohttp.ClientTimeout(total=10)
    shortcodes: list[str] = []
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=4)) as session:
        while not stop.is_set() and (not settings.max_votes or tally.ok + tally.failed < settings.max_votes):
            try:
                if not shortcodes:
                    async with session.get(f"{base}/api/list") as resp:
                        listed = await resp.json(content_type=None) if resp.status == 200 else []
                    shortcodes = [e["shortcode"] for e in listed if isinstance(e, dict) and "shortcode" in e]
                if shortcodes:
                    choice = pick(shortcodes, rng)
                    async with session.get(f"{base}/api/vote", params={"choice": choice}) as resp:
                        await resp.read()
                        tally.record(resp.status)
                        log.info("vote", choice=choice, status=resp.status)
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                tally.record(0)
                log.warning("vote.failed", error=str(exc) or type(exc).__name__)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass
    return tally


def main() -> None:
    from meshlet.controller import log

    logger = log.setup("emojivoto-vote-bot")
    try:
        settings = BotSettings.from_env()
    except ConfigError as exc:
        logger.error("config.invalid", error=str(exc))
        raise SystemExit(2) from None

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tally = await run_bot(settings, stop, logger)
        logger.info("bot.stopped", ok=tally.ok, failed=tally.failed)
        if settings.max_votes:  # a bounded run stays up like a pod would (exits on SIGTERM)
            await stop.wait()

    asyncio.run(go())


if __name__ == "__main__":
    main()
