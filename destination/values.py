"""Small pure conversions shared by the profile translators: durations, percentages, string matches, header ops.

The translators read the typed resource model (`meshlet.controller.model`:
frozen dataclasses whose snake_case attributes mirror Istio's camelCase
fields). `attr` reads an optional field that some versions of the model may
spell differently (e.g. `consecutive_5xx_errors`); absent and None are the
same thing everywhere here, like unset fields in Istio's protos.

Bad values raise `InvalidRule` naming the field; the profile builder skips
the resource that carries them (the store validates on apply, so this only
guards against what slipped through).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from meshlet.api import destination_pb as pb

from .errors import InvalidRule

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_UNIT_MS = {"h": 3_600_000.0, "m": 60_000.0, "s": 1000.0, "ms": 1.0, "us": 0.001, "µs": 0.001, "ns": 0.000001}
MAX_UINT32 = 2**32 - 1


def attr(obj: Any, *names: str, default: Any = None) -> Any:
    """The first of `names` that `obj` has with a value that is not None; `default` otherwise."""
    if obj is None:
        return default
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return default


def items(obj: Any, *names: str) -> tuple[Any, ...]:
    """A repeated field as a tuple (absent = empty)."""
    value = attr(obj, *names)
    if value is None:
        return ()
    if isinstance(value, (str, bytes)):
        return (value,)
    return tuple(value)


def mapping(obj: Any, *names: str) -> dict[str, Any]:
    value = attr(obj, *names)
    return dict(value) if value else {}


def duration_ms(value: Any, field: str) -> int | None:
    """Milliseconds of a duration ("1.5s", "250ms", "1m30s", seconds as a number, timedelta); None if unset."""
    if value is None or value == "":
        return None
    if isinstance(value, timedelta):
        ms = value.total_seconds() * 1000
    elif isinstance(value, bool):
        raise InvalidRule(f"{field}: expected a duration like '5s', got {value!r}")
    elif isinstance(value, (int, float)):
        ms = float(value) * 1000
    elif isinstance(value, str):
        text = value.strip()
        if text == "0":
            return 0
        pos, ms = 0, 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            ms += float(m.group(1)) * _UNIT_MS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise InvalidRule(f"{field}: {value!r} is not a duration (use e.g. '5s', '250ms', '1m30s')")
    else:
        seconds = attr(value, "seconds")
        if seconds is None:
            raise InvalidRule(f"{field}: expected a duration like '5s', got {value!r}")
        ms = float(seconds) * 1000 + float(attr(value, "nanos", default=0)) / 1e6
    if ms < 0:
        raise InvalidRule(f"{field}: duration must not be negative, got {value!r}")
    return min(MAX_UINT32, round(ms)) if ms == 0 else min(MAX_UINT32, max(1, round(ms)))


def percent(value: Any, field: str, *, default: float | None = None) -> float | None:
    """0..100 from Istio's Percent (`{value: 12.5}`), a bare number, or None (-> default)."""
    if value is None:
        return default
    raw = attr(value, "value") if not isinstance(value, (int, float)) else value
    if raw is None:
        return default if not hasattr(value, "value") else 0.0
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise InvalidRule(f"{field}: expected a percentage, got {raw!r}")
    if not 0 <= raw <= 100:
        raise InvalidRule(f"{field}: percentage must be between 0 and 100, got {raw}")
    return float(raw)


def string_match(match: Any, field: str, *, ignore_case: bool = False) -> pb.StringMatch | None:
    """Istio StringMatch {exact|prefix|regex} -> pb.StringMatch; None when no kind is set (presence)."""
    if match is None:
        return None
    if isinstance(match, str):  # a plain value (Gateway API exact matches, legacy allowOrigin)
        return pb.StringMatch(exact=match, ignore_case=ignore_case)
    exact, prefix, regex = attr(match, "exact"), attr(match, "prefix"), attr(match, "regex")
    if sum(v is not None for v in (exact, prefix, regex)) > 1:
        raise InvalidRule(f"{field}: set only one of exact, prefix, regex")
    if regex is not None:
        check_regex(regex, field)
        return pb.StringMatch(regex=regex)  # Istio: ignoreUriCase only affects exact/prefix
    if exact is not None:
        return pb.StringMatch(exact=exact, ignore_case=ignore_case)
    if prefix is not None:
        return pb.StringMatch(prefix=prefix, ignore_case=ignore_case)
    return None


def check_regex(pattern: str, field: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise InvalidRule(f"{field}: invalid regex {pattern!r}: {e}") from None


def header_ops(ops: Any) -> pb.HeaderOps | None:
    """Istio HeaderOperations {set, add, remove} -> pb.HeaderOps; None when empty."""
    if ops is None:
        return None
    out = pb.HeaderOps(
        set={str(k).lower(): str(v) for k, v in mapping(ops, "set").items()},
        add={str(k).lower(): str(v) for k, v in mapping(ops, "add").items()},
        remove=[str(h).lower() for h in items(ops, "remove")],
    )
    return out if (out.set or out.add or out.remove) else None


def header_ops_from_pairs(set_: Iterable[Any], add: Iterable[Any], remove: Iterable[str]) -> pb.HeaderOps | None:
    """Gateway API HTTPHeaderFilter lists of {name, value} -> pb.HeaderOps."""
    out = pb.HeaderOps(
        set={str(h.name).lower(): str(h.value) for h in set_},
        add={str(h.name).lower(): str(h.value) for h in add},
        remove=[str(h).lower() for h in remove],
    )
    return out if (out.set or out.add or out.remove) else None


def uint(value: Any, field: str, *, default: int = 0) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UINT32:
        raise InvalidRule(f"{field}: expected a non-negative integer, got {value!r}")
    return value


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
