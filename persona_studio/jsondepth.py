"""A nesting-depth guard for untrusted JSON, fed the raw bytes before a parser sees them.

Deep nesting is the cheap attack on JSON readers: `[[[[…` 100k levels deep is 200 KB, yet it
drives ijson's prefix bookkeeping to gigabytes (each level's prefix string is one longer than
the last) and `json.loads` into a RecursionError. The scanner here counts brackets outside
strings, chunk by chunk, so a stream is refused the moment it goes too deep, whatever parser
reads it next, and memory stays one chunk.

Speed matters (a Telegram export can be gigabytes): each chunk is scanned with a few numpy
passes, about twice the speed of ijson's C parse behind it and ~10% of a whole Telegram
`speakers` run (bench/jsondepth_bench.py). No Python loop runs per byte.
"""

from __future__ import annotations

import json
from typing import Any

# Real exports nest about 6 levels (Telegram: file > messages > message > text > entity).
MAX_DEPTH = 64

_np: Any = None


class TooDeep(ValueError):
    """The data nests deeper than the limit; `offset` counts bytes fed before the bracket."""

    def __init__(self, limit: int, offset: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")
        self.limit = limit
        self.offset = offset


class DepthGuard:
    """Feed it a JSON byte stream in order; `feed` raises TooDeep at the first bracket that
    opens level `limit + 1`. UTF-8 is safe to scan bytewise: no multi-byte character contains
    a quote, backslash or bracket byte."""

    def __init__(self, limit: int = MAX_DEPTH) -> None:
        self.limit = limit
        self.depth = 0
        self.in_string = False
        self.backslashes = 0  # the run of backslashes the last chunk ended with
        self.fed = 0

    def feed(self, data: bytes) -> None:
        global _np
        if _np is None:
            import numpy

            _np = numpy
        np = _np
        start = self.fed
        self.fed += len(data)
        if not data:
            return
        a = np.frombuffer(data, np.uint8)
        quote = a == 0x22
        # A quote after an odd run of backslashes is escaped (the run may begin in the last chunk).
        after_bs = np.flatnonzero(quote[1:] & (a[:-1] == 0x5C)) + 1
        if len(after_bs):
            # Most are a lone `\"`; only runs of two or more need counting.
            longer = (after_bs < 2) | (a[np.maximum(after_bs - 2, 0)] == 0x5C)
            escaped = ~longer
            if longer.any():
                # Index of the last non-backslash byte at or before each position (-1: none yet).
                last = np.maximum.accumulate(np.where(a == 0x5C, -1, np.arange(len(a))))[after_bs - 1]
                runs = after_bs - 1 - last + np.where(last < 0, self.backslashes, 0)
                escaped = runs % 2 == 1
            quote[after_bs[escaped]] = False
        if quote[0] and self.backslashes % 2:
            quote[0] = False
        inside = (np.cumsum(quote, dtype=np.int32) & 1).astype(bool)
        if self.in_string:
            inside = ~inside
        step = ((a == 0x5B) | (a == 0x7B)).astype(np.int32) - ((a == 0x5D) | (a == 0x7D))
        step[inside] = 0
        depth = np.cumsum(step) + self.depth
        over = np.flatnonzero(depth > self.limit)
        if len(over):
            raise TooDeep(self.limit, start + int(over[0]))
        self.depth = int(depth[-1])
        self.in_string = bool(inside[-1])
        run = len(data) - len(data.rstrip(b"\\"))
        self.backslashes = run + (self.backslashes if run == len(data) else 0)


def check(data: bytes | str, limit: int = MAX_DEPTH) -> None:
    """Raise TooDeep if one JSON document nests deeper than `limit` (offset in UTF-8 bytes)."""
    if isinstance(data, str):
        # Fast path for the common case: too few brackets to ever reach the limit.
        if data.count("[") + data.count("{") <= limit:
            return
        data = data.encode("utf-8", "surrogatepass")
    elif data.count(b"[") + data.count(b"{") <= limit:
        return
    DepthGuard(limit).feed(data)


def line_of(data: bytes | str, offset: int) -> int:
    """1-based line of a byte offset into `data` (str data is measured in UTF-8)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return raw.count(b"\n", 0, offset) + 1


def loads(text: str | bytes, limit: int = MAX_DEPTH) -> Any:
    """json.loads for untrusted text: TooDeep past `limit`, and a number too long for Python's
    int conversion limit is a JSONDecodeError like any other bad JSON (not a bare ValueError)."""
    check(text, limit)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        doc = text if isinstance(text, str) else text.decode("utf-8", "replace")
        raise json.JSONDecodeError(str(exc).split(";")[0], doc, 0) from None
