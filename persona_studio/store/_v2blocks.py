"""The v2 `message_blocks` row layout (schema migrations 2 and 3 only; never used at run time).

v2 packed each column of a block into its own value: a string column is "\\x00" + the values
joined by "\\x00", or a JSON list where a value itself holds "\\x00"; `ts` is little-endian
float64, `is_me` one byte per message; `meta` a JSON object of columns ("{}" when empty).
Kept frozen here so those migrations read and write exactly what v2 did, whatever
store/blocks.py becomes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

DDL = """
    CREATE TABLE message_blocks (
        id          INTEGER PRIMARY KEY,
        import_id   INTEGER NOT NULL REFERENCES imports(id) ON DELETE CASCADE,
        first_seq   INTEGER NOT NULL,
        n           INTEGER NOT NULL,
        ts          BLOB NOT NULL,
        is_me       BLOB NOT NULL,
        chat        TEXT NOT NULL,
        speaker     TEXT NOT NULL,
        speaker_id  TEXT NOT NULL,
        kind        TEXT NOT NULL,
        text        TEXT NOT NULL,
        meta        TEXT NOT NULL DEFAULT '{}',
        UNIQUE (import_id, first_seq)
    )
"""
INSERT = (
    "INSERT INTO message_blocks (import_id, first_seq, n, ts, is_me, chat, speaker, speaker_id, kind, text, meta)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
SELECT = (
    "SELECT import_id, first_seq, n, ts, is_me, chat, speaker, speaker_id, kind, text, meta"
    " FROM {table} ORDER BY import_id, first_seq"
)


def _pack_strings(values: Sequence[str]) -> str:
    joined = "\x00".join(values)
    if joined.count("\x00") == len(values) - 1:
        return "\x00" + joined
    return json.dumps(list(values), ensure_ascii=False)


def _unpack_strings(packed: str, n: int) -> list[str]:
    values = packed[1:].split("\x00") if packed.startswith("\x00") else json.loads(packed)
    if len(values) != n:
        raise ValueError(f"packed column holds {len(values)} values, expected {n}")
    return values


def pack(import_id: int, first_seq: int, ts: np.ndarray, is_me: bytes, strings: Sequence[Sequence[str]],
         meta: dict[str, list[Any]]) -> tuple[Any, ...]:
    """A v2 row; `strings` are the chat, speaker, speaker_id, kind and text columns."""
    n = len(strings[-1])
    return (
        import_id, first_seq, n, np.ascontiguousarray(ts, dtype="<f8").tobytes(), is_me,
        *(_pack_strings(s) for s in strings),
        json.dumps(meta, ensure_ascii=False) if meta else "{}",
    )


def unpack(row: Sequence[Any]) -> dict[str, Any]:
    """A v2 row (as SELECT orders it) -> the keyword arguments of `Block(...)` and import_id."""
    import_id, first_seq, n, ts, is_me, *strings, meta = row
    chat, speaker, speaker_id, kind, text = (_unpack_strings(s, n) for s in strings)
    return {
        "import_id": import_id, "first_seq": first_seq, "ts": np.frombuffer(ts, dtype="<f8"),
        "chat": chat, "speaker": speaker, "speaker_id": speaker_id, "kind": kind, "text": text,
        "is_me": bytes(is_me), "meta": json.loads(meta) if meta != "{}" else {},
    }
