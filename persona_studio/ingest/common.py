"""Pieces every importer shares: the read statistics and timestamp parsing."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from persona_studio.ingest.base import Message

MAX_BAD_EXAMPLES = 20


@dataclass
class ReadStats:
    """What one `read()` saw. Filled while the iterator runs, final once it is exhausted.

    read: messages yielded. bad: records dropped as malformed (a row with a bad timestamp, a
    JSONL line that doesn't parse); `bad_examples` keeps the first 20 as "file:line: reason".
    skipped_kinds: records the source has but the importer deliberately does not yield
    (tool calls in datasets, file-level metadata…), counted by kind.
    """

    read: int = 0
    bad: int = 0
    skipped_kinds: dict[str, int] = field(default_factory=dict)
    bad_examples: list[str] = field(default_factory=list)
    encoding: str = ""
    format: str = ""

    def add_bad(self, where: str, reason: str) -> None:
        self.bad += 1
        if len(self.bad_examples) < MAX_BAD_EXAMPLES:
            self.bad_examples.append(f"{where}: {reason}")

    def skip(self, kind: str) -> None:
        self.skipped_kinds[kind] = self.skipped_kinds.get(kind, 0) + 1


def where(path: Path, line: int | str) -> str:
    return f"{path}:{line}"


@lru_cache(maxsize=4096)
def _day_start(y: int, mo: int, d: int) -> int:
    # date() validates the day (no 31 Feb); the cache makes a million rows on a few
    # hundred distinct days cost a dict lookup each.
    return (date(y, mo, d).toordinal() - 719163) * 86400


def wall_ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    """POSIX seconds of a local wall-clock time read as UTC (chat exports carry no zone).
    Raises ValueError for an impossible date or time."""
    if not (0 <= h < 24 and 0 <= mi < 60 and 0 <= s < 61):
        raise ValueError("time out of range")
    return float(_day_start(y, mo, d) + h * 3600 + mi * 60 + s)


_DATETIME = re.compile(
    r"\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.\d+)?)?)?\s*$"
)


# Exports write a few hundred distinct days and at most 86,400 distinct clock times, but a
# million timestamps: caching both halves turns most parses into two dict lookups.
_DAY_CACHE: dict[str, int] = {}  # "2024-10-04" -> POSIX seconds of that midnight (UTC wall time)
_CLOCK_CACHE: dict[str, int] = {}  # "11:42:10" -> seconds since midnight
_CACHE_MAX = 200_000  # bounds memory on pathological input; beyond it we just parse


def _clock_seconds(time_part: str) -> int | None:
    """Seconds of `HH:MM[:SS]`; None for any other shape; ValueError when out of range."""
    if not time_part.replace(":", "").isdigit():
        return None
    parts = time_part.split(":")
    if len(parts) == 2:
        h, mi, s = int(parts[0]), int(parts[1]), 0
    elif len(parts) == 3:
        h, mi, s = int(parts[0]), int(parts[1]), int(parts[2])
    else:
        return None
    if h >= 24 or mi >= 60 or s >= 61:
        raise ValueError("time out of range")
    secs = h * 3600 + mi * 60 + s
    if len(_CLOCK_CACHE) < _CACHE_MAX:
        _CLOCK_CACHE[time_part] = secs
    return secs


def parse_wall_time(text: str) -> float:
    """`2024/10/4 11:42`, `2024-10-04 11:42:10`, `2024-10-04`, ISO 8601 with `T`/`Z`/an offset,
    or unix seconds/milliseconds."""
    # Fast path: the common `DATE HH:MM[:SS]` shape with a date seen before, no regex.
    date_part, _, time_part = text.partition(" ")
    day = _DAY_CACHE.get(date_part)
    if day is not None:
        secs = _CLOCK_CACHE.get(time_part)
        if secs is None:
            try:
                secs = _clock_seconds(time_part)
            except ValueError:
                raise ValueError(f"bad time {text[:40]!r}") from None
        if secs is not None:
            return float(day + secs)
    m = _DATETIME.match(text)
    if m:
        y, mo, d, h, mi, s = m.groups()
        ts = wall_ts(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
        if h is not None and len(_DAY_CACHE) < _CACHE_MAX and date_part == text.strip().partition(" ")[0]:
            _DAY_CACHE[date_part] = _day_start(int(y), int(mo), int(d))
        return ts
    text = text.strip()
    if text.isdigit():
        value = float(text)
        return value / 1000 if value > 1e11 else value
    if len(text) >= 16 and text[4] == "-" and text[10] in "T ":
        # ISO 8601 with a zone (`2024-10-04T11:42:10Z`, `…+08:00`): the true instant
        try:
            return parse_iso(text)
        except ValueError:
            pass
    raise ValueError(f"bad time {text[:40]!r}")


def parse_iso(text: str) -> float:
    """ISO 8601 (`2023-01-05T12:00:01`, `…Z`, `…+02:00`, 7 fractional digits); naive → UTC."""
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def json_messages(
    path: Path,
    records: Iterable[tuple[Any, str]],
    convert: Callable[[dict[str, Any], str], Message],
    stats: ReadStats,
    errors: tuple[type[Exception], ...],
) -> Iterator[Message]:
    """Messages of a JSON export's (record, chat) pairs: a record that is not an object, or that
    `convert` rejects with one of `errors`, is counted bad (as "message N") and skipped."""
    for index, (value, chat) in enumerate(records, 1):
        if not isinstance(value, dict):
            stats.add_bad(where(path, f"message {index}"), "not a JSON object")
            continue
        try:
            message = convert(value, chat)
        except errors as exc:
            reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            stats.add_bad(where(path, f"message {index}"), f"id {value.get('id')!r}: {reason}")
            continue
        stats.read += 1
        yield message
