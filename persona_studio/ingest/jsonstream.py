"""Streaming JSON for exports too big to `json.load` (a Telegram result.json can be gigabytes).

ijson (yajl2 C backend) parses incrementally; this module adds what a user-facing importer
needs on top: a line number for the error when the file is bad, and a way to walk several
arrays in one pass while remembering the scalars seen before them (a chat's name comes
before its messages).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import ijson
from ijson.common import ObjectBuilder

from persona_studio.ingest.base import ImportError_
from persona_studio.ingest.encoding import open_text, open_utf8_bytes
from persona_studio.jsondepth import DepthGuard, TooDeep

# Small reads keep the line we can name for a syntax error in a huge file close to the error.
BUF_SIZE = 16384
# Files up to this size are re-read whole on a syntax error to name the exact line.
EXACT_ERROR_LIMIT = 64 << 20


class CountingReader:
    """Wraps the byte stream ijson reads, counting newlines so errors can name a line, and
    refusing nesting past the depth limit before ijson sees it (ijson's memory grows with the
    square of the depth)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.guard = DepthGuard()
        self.too_deep_line = 0
        self.lines_before_chunk = 0  # newlines before the chunk being parsed now
        self.lines = 0
        self.last_byte = b""
        self.eof = False

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.lines_before_chunk = self.lines
        try:
            self.guard.feed(data)
        except TooDeep as exc:
            self.too_deep_line = self.lines + data.count(b"\n", 0, exc.offset - self.guard.fed + len(data)) + 1
            raise
        if data:
            self.lines += data.count(b"\n")
            self.last_byte = data[-1:]
        else:
            self.eof = True
        return data

    def close(self) -> None:
        self.raw.close()


def open_json(path: Path, encoding: str) -> CountingReader:
    return CountingReader(open_utf8_bytes(path, encoding))


def json_error(path: Path, encoding: str, exc: Exception, reader: CountingReader) -> ImportError_:
    """Turn an ijson failure into one line: `chat.json:123: truncated JSON (…)`."""
    if isinstance(exc, TooDeep):
        return ImportError_(f"{path}:{reader.too_deep_line}: {exc} (refused: a chat export nests a few levels)")
    detail = str(exc).strip().splitlines()[0].split(";")[0] if str(exc).strip() else type(exc).__name__
    if "premature EOF" in detail:
        last = reader.lines + (0 if reader.last_byte == b"\n" else 1)
        return ImportError_(f"{path}:{last}: truncated JSON (unexpected end of file)")
    try:
        size = path.stat().st_size
    except OSError:
        size = EXACT_ERROR_LIMIT + 1
    if size <= EXACT_ERROR_LIMIT:
        # The error path only: decode the (modest) file whole so json names the exact spot.
        with open_text(path, encoding) as f:
            text = f.read().lstrip("\ufeff")
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            if err.pos >= len(text.rstrip()):
                return ImportError_(f"{path}:{err.lineno}: truncated JSON (unexpected end of file)")
            return ImportError_(f"{path}:{err.lineno}: bad JSON ({err.msg}, column {err.colno})")
        except (ValueError, RecursionError):
            pass  # json stumbled elsewhere (a number past the int limit, nesting past NaN…): use ijson's spot
    return ImportError_(f"{path}:{reader.lines_before_chunk + 1}: bad JSON near here ({detail})")


def items(path: Path, encoding: str, prefix: str) -> Iterator[Any]:
    """Each value at `prefix` (ijson syntax, e.g. "messages.item"), parsed in C."""
    reader = open_json(path, encoding)
    try:
        yield from ijson.items(reader, prefix, use_float=True, buf_size=BUF_SIZE)
    except (ijson.JSONError, ValueError, OverflowError) as exc:  # ValueError: TooDeep, ints
        raise json_error(path, encoding, exc, reader) from None
    finally:
        reader.close()


def head_context(
    path: Path, encoding: str, stop_keys: set[str], keep: Callable[[str], bool]
) -> tuple[dict[str, Any], str | None]:
    """Scalars (by prefix, as `keep` picks them) seen before the first top-level key in
    `stop_keys`, and that key (None if none came). Reading stops there, so finding a chat's
    name ahead of its messages costs next to nothing."""
    reader = open_json(path, encoding)
    context: dict[str, Any] = {}
    try:
        for prefix, event, value in ijson.parse(reader, use_float=True, buf_size=BUF_SIZE):
            if event == "map_key" and prefix == "" and value in stop_keys:
                return context, value
            if keep(prefix) and event in ("string", "number", "boolean", "null"):
                context[prefix] = value
    except (ijson.JSONError, ValueError, OverflowError) as exc:  # ValueError: TooDeep, ints
        raise json_error(path, encoding, exc, reader) from None
    finally:
        reader.close()
    return context, None


def walk(
    path: Path, encoding: str, want: Callable[[str], bool], keep: Callable[[str], bool]
) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """One pass over the file yielding (prefix, value, context) for every value whose prefix
    `want` accepts; `context` maps each scalar prefix `keep` accepted to its latest value
    (the chat name seen before that chat's messages, say). Slower per value than `items`
    (events go through Python) but it sees every array in the file."""
    reader = open_json(path, encoding)
    context: dict[str, Any] = {}
    events = ijson.parse(reader, use_float=True, buf_size=BUF_SIZE)
    try:
        for prefix, event, value in events:
            if event in ("start_map", "start_array"):
                if not want(prefix):
                    # A new object (the next chat) must not inherit the previous one's name.
                    if event == "start_map" and context:
                        stale = prefix + "." if prefix else ""
                        for key in [k for k in context if k.startswith(stale)]:
                            del context[key]
                    continue
                builder = ObjectBuilder()
                builder.event(event, value)
                depth = 1
                for _, event, value in events:
                    if event in ("start_map", "start_array"):
                        depth += 1
                    elif event in ("end_map", "end_array"):
                        depth -= 1
                    builder.event(event, value)
                    if depth == 0:
                        break
                yield prefix, builder.value, context
            elif event in ("string", "number", "boolean", "null"):
                if want(prefix):
                    yield prefix, value, context
                elif keep(prefix):
                    context[prefix] = value
    except (ijson.JSONError, ValueError, OverflowError) as exc:  # ValueError: TooDeep, ints
        raise json_error(path, encoding, exc, reader) from None
    finally:
        reader.close()
