"""Settings of the emojivoto pieces, read once from the environment (the original's variable names)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PORT = 8080


class ConfigError(ValueError):
    """An environment variable has a value the app cannot use."""


def parse_port(name: str, text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name} must be in 0..65535, got {port}")
    return port


def parse_hostport(name: str, text: str) -> tuple[str, int]:
    """`emoji-svc.emojivoto:8080` -> ("emoji-svc.emojivoto", 8080)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{name} must be host:port, got {text!r}")
    return host.strip("[]"), parse_port(name, port)


@dataclass(frozen=True)
class GrpcSettings:
    """emoji and voting: where the gRPC server listens (GRPC_PORT, default 8080)."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GrpcSettings:
        env = os.environ if env is None else env
        return cls(host=env.get("GRPC_HOST", "0.0.0.0"),
                   port=parse_port("GRPC_PORT", env.get("GRPC_PORT") or str(DEFAULT_PORT)))


@dataclass(frozen=True)
class WebSettings:
    """web: its HTTP port (WEB_PORT) and the gRPC services it calls (EMOJISVC_HOST, VOTINGSVC_HOST)."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    emoji_addr: tuple[str, int] = ("emoji-svc", DEFAULT_PORT)
    voting_addr: tuple[str, int] = ("voting-svc", DEFAULT_PORT)
    call_timeout_s: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebSettings:
        env = os.environ if env is None else env
        return cls(host=env.get("WEB_HOST_IP", "0.0.0.0"),
                   port=parse_port("WEB_PORT", env.get("WEB_PORT") or str(DEFAULT_PORT)),
                   emoji_addr=parse_hostport("EMOJISVC_HOST", env.get("EMOJISVC_HOST") or "emoji-svc:8080"),
                   voting_addr=parse_hostport("VOTINGSVC_HOST", env.get("VOTINGSVC_HOST") or "voting-svc:8080"))


@dataclass(frozen=True)
class BotSettings:
    """vote-bot: the web service (WEB_HOST), votes per second (VOTE_RATE, at most 50) and an optional total."""

    web: tuple[str, int] = ("web-svc", 80)
    rate: float = 2.0
    max_votes: int = 0
    """0: vote until stopped."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BotSettings:
        env = os.environ if env is None else env
        text = env.get("VOTE_RATE") or "2"
        try:
            rate = float(text)
        except ValueError:
            raise ConfigError(f"VOTE_RATE must be a number, got {text!r}") from None
        if not 0 < rate <= 50:
            raise ConfigError(f"VOTE_RATE must be in (0, 50], got {rate}")
        max_text = env.get("VOTE_MAX") or "0"
        if not max_text.isdigit():
            raise ConfigError(f"VOTE_MAX must be a non-negative integer, got {max_text!r}")
        return cls(web=parse_hostport("WEB_HOST", env.get("WEB_HOST") or "web-svc:80"), rate=rate,
                   max_votes=int(max_text))
