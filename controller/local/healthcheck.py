"""Health checks as data (Linkerd's `pkg/healthcheck` shape) and their runner.

A `Checker` is a description, a hint anchor and an async check function; a
`Category` is a named list of checkers. `run_checks` runs them in order and
hands every `CheckResult` to an observer (the CLI renders table or JSON);
checks never print. A check signals its outcome by returning (success),
raising `CheckFailed` (×), `CheckWarning` (‼) or `SkipCheck` (not shown).
A failing `fatal` checker stops everything after it; a failing `warning`
checker is shown as ‼ and does not fail the run.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

C = TypeVar("C")

HINT_BASE = "docs/troubleshooting.md#"
CHECK_TIMEOUT = 15.0


class CheckFailed(Exception):
    """The check failed; the message says what is wrong."""


class CheckWarning(Exception):
    """The check passed with a warning (‼)."""


class SkipCheck(Exception):
    """The check does not apply (e.g. no meshed pods); it is not reported."""


@dataclass(frozen=True)
class Checker(Generic[C]):
    description: str
    hint: str
    """Anchor in docs/troubleshooting.md."""
    check: Callable[[C], Awaitable[None]]
    warning: bool = False
    fatal: bool = False

    @property
    def hint_url(self) -> str:
        return HINT_BASE + self.hint


@dataclass(frozen=True)
class Category(Generic[C]):
    name: str
    checkers: tuple[Checker[C], ...]


@dataclass(frozen=True)
class CheckResult:
    category: str
    description: str
    hint: str
    error: str | None = None
    warning: bool = False
    """True when `error` is only a warning (‼)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def result(self) -> str:
        return "success" if self.error is None else "warning" if self.warning else "error"


@dataclass
class Summary:
    results: list[CheckResult] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(r.ok or r.warning for r in self.results)


Observer = Callable[[CheckResult], None]


async def run_checks(categories: Sequence[Category[Any]], ctx: Any, observer: Observer,
                     timeout: float = CHECK_TIMEOUT) -> Summary:
    summary = Summary()
    for category in categories:
        for checker in category.checkers:
            try:
                await asyncio.wait_for(checker.check(ctx), timeout)
                result = CheckResult(category.name, checker.description, checker.hint_url)
            except SkipCheck:
                continue
            except CheckWarning as e:
                result = CheckResult(category.name, checker.description, checker.hint_url, str(e), warning=True)
            except TimeoutError:
                result = CheckResult(category.name, checker.description, checker.hint_url,
                                     f"no answer within {timeout:.0f}s", warning=checker.warning)
            except CheckFailed as e:
                result = CheckResult(category.name, checker.description, checker.hint_url, str(e),
                                     warning=checker.warning)
            summary.results.append(result)
            observer(result)
            if not result.ok and not result.warning and checker.fatal:
                return summary
    return summary
