"""A CSV file as a stream of byte chunks that each hold whole records, in Arrow memory.

Why chunk ourselves rather than let pyarrow.csv stream the file: a chunk that starts and ends
on record boundaries can be handed to `pyarrow.csv.read_csv` and, when it holds something
unusual, to the `csv` module instead, starting on a known line. So the common case runs at
Arrow speed while odd rows are still judged (and their line numbers reported) exactly as the
csv module does. Chunks live in Arrow buffers, read into directly: nothing the size of a chunk
is a Python object.

Where records end: a line break ends a record when an even number of quotes precede it in the
chunk (quotes toggle "inside a quoted field"). That holds for CSV whose quotes all open or
close quoted fields (escaped quotes come in pairs), which `Chunk.plain` checks; anything else
(a quote inside an unquoted field, text after a closing quote, a quote left open at the end)
marks the chunk not plain, and the caller hands it and the rest of the file to the csv module.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

ReadInto = Callable[[memoryview], int]

CHUNK_BYTES = 4 << 20  # a few MiB: per-chunk costs vanish, memory stays small
_WINDOW = 1 << 18
_QUOTE, _COMMA, _LF, _CR = 34, 44, 10, 13


@dataclass
class Chunk:
    data: pa.Buffer  # whole records: ends just after a line break, or at the end of the file
    line: int  # lines of the file before it (its first record starts on line + 1)
    breaks: int  # line breaks in it (\r\n, \n and \r each count one, as the csv module counts)
    has_cr: bool
    plain: bool  # every quote opens or closes a quoted field (see the module doc)


class CsvChunks:
    """Chunks from `readinto` (a file's `readinto`, or one that feeds re-encoded text)."""

    def __init__(self, readinto: ReadInto, size: int = CHUNK_BYTES):
        import pyarrow as pa

        self._readinto = readinto
        self._size = size
        self._buf = pa.allocate_buffer(size)
        self._filled = 0
        self._eof = False
        self.line = 0

    def next(self, first_record: bool = False) -> Chunk | None:
        """The next chunk (just one record with `first_record`: a header), None at the end."""
        while True:
            self._fill()
            if self._filled == 0:
                return None
            view = np.frombuffer(self._buf, dtype=np.uint8, count=self._filled)
            quotes = _quotes(view)
            cut = _record_end(view, quotes, first_record, self._eof)
            if cut is not None:
                return self._take(view, quotes, cut)
            if self._eof:
                return self._take(view, quotes, self._filled)  # ends inside quotes: not plain
            self._grow()  # one record longer than the buffer

    def rest(self, chunk: Chunk) -> BinaryIO:
        """The file's bytes from the start of `chunk` (the latest) to its end, as a stream."""
        return io.BufferedReader(_Rest([chunk.data, self._buf.slice(0, self._filled)], self._readinto))

    def _fill(self) -> None:
        mv = _bytes_view(self._buf)
        while not self._eof and self._filled < len(mv):
            got = self._readinto(mv[self._filled:])
            if not got:
                self._eof = True
            self._filled += got or 0

    def _grow(self) -> None:
        import pyarrow as pa

        bigger = pa.allocate_buffer(2 * len(self._buf))
        _bytes_view(bigger)[:self._filled] = _bytes_view(self._buf)[:self._filled]
        self._buf = bigger

    def _take(self, view: np.ndarray, quotes: np.ndarray, cut: int) -> Chunk:
        import pyarrow as pa

        inside = quotes[:np.searchsorted(quotes, cut)]
        breaks, has_cr = _breaks(view[:cut])
        chunk = Chunk(self._buf.slice(0, cut), self.line, breaks, has_cr, _plain(view[:cut], inside))
        self.line += chunk.breaks
        # The rest moves to a new buffer: `data` stays valid for as long as the caller holds it.
        left = self._filled - cut
        fresh = pa.allocate_buffer(max(self._size, left))  # left > size only after `_grow`
        _bytes_view(fresh)[:left] = _bytes_view(self._buf)[cut:self._filled]
        self._buf, self._filled = fresh, left
        return chunk


def _bytes_view(buf: pa.Buffer) -> memoryview:
    """An unsigned-byte view (Arrow exports signed chars, which bytes cannot be assigned to)."""
    return memoryview(buf).cast("B")  # type: ignore[arg-type]


def _windows(n: int) -> range:
    # numpy temporaries stay a window's size, not a chunk's (and out of tracemalloc's way)
    return range(0, n, _WINDOW)


def _quotes(view: np.ndarray) -> np.ndarray:
    """Positions of every '"' in view."""
    found = [np.flatnonzero(view[lo:lo + _WINDOW] == _QUOTE) + lo for lo in _windows(len(view))]
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def _breaks(view: np.ndarray) -> tuple[int, bool]:
    """(line breaks in view, whether it holds a \r): \r\n, \n and \r count one each."""
    lf = sum(int(np.count_nonzero(view[lo:lo + _WINDOW] == _LF)) for lo in _windows(len(view)))
    cr = sum(int(np.count_nonzero(view[lo:lo + _WINDOW] == _CR)) for lo in _windows(len(view)))
    crlf = 0
    if cr:
        for lo in _windows(len(view)):
            seg = view[lo:lo + _WINDOW + 1]  # one byte over: a pair may straddle windows
            crlf += int(np.count_nonzero((seg[:-1] == _CR) & (seg[1:] == _LF)))
    return lf + cr - crlf, cr > 0


def _record_end(view: np.ndarray, quotes: np.ndarray, first: bool, eof: bool) -> int | None:
    """Just past the last (or first) line break outside quotes, or None if there is none.
    A \\r directly followed by \\n is not a record end (the \\n is); nor is a \\r in the last
    byte before more of the file is read."""
    n = len(view)
    starts = range(0, n, _WINDOW) if first else (max(0, hi - _WINDOW) for hi in range(n, 0, -_WINDOW))
    for lo in starts:
        seg = view[lo:lo + _WINDOW]
        at = np.flatnonzero((seg == _LF) | (seg == _CR)) + lo
        if not len(at):
            continue
        ok = np.searchsorted(quotes, at) % 2 == 0
        cr = view[at] == _CR
        nxt = np.minimum(at + 1, n - 1)
        ok &= ~(cr & (at + 1 < n) & (view[nxt] == _LF))
        if not eof:
            ok &= ~(cr & (at + 1 == n))
        hits = at[ok]
        if len(hits):
            return int(hits[0] if first else hits[-1]) + 1
    return None


def _plain(view: np.ndarray, quotes: np.ndarray) -> bool:
    """Every quote opens a quoted field (at a field start, or right after the quote before it:
    an escaped pair) or closes one (before a comma, a line break, the end, or the quote after
    it), and the last one closes. Then quotes toggle "inside", as `_record_end` assumes, and the
    csv module (strict) would accept the quoting; arrow reads it the same way."""
    if len(quotes) % 2:
        return False
    if not len(quotes):
        return True
    opens, closes = quotes[0::2], quotes[1::2]
    before = view[np.maximum(opens - 1, 0)]
    open_ok = (opens == 0) | (before == _COMMA) | (before == _LF) | (before == _CR) | (before == _QUOTE)
    last = len(view) - 1
    after = view[np.minimum(closes + 1, last)]
    close_ok = (closes == last) | (after == _COMMA) | (after == _LF) | (after == _CR) | (after == _QUOTE)
    return bool(open_ok.all() and close_ok.all())


class _Rest(io.RawIOBase):
    """Buffers first, then whatever `readinto` still has: the file from some chunk on."""

    def __init__(self, parts: list[pa.Buffer], readinto: ReadInto):
        self._parts = [_bytes_view(p) for p in parts if p.size]
        self._readinto = readinto

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        out = memoryview(b).cast("B")
        if not self._parts:
            return self._readinto(out)
        part = self._parts[0]
        n = min(len(part), len(out))
        out[:n] = part[:n]
        if n == len(part):
            self._parts.pop(0)
        else:
            self._parts[0] = part[n:]
        return n
