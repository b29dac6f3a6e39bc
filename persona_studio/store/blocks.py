"""Raw messages are stored in blocks: one `message_blocks` row per run of up to a few
thousand consecutive messages of one import, each column packed into one value.

Why not one row per message: a 1M-message export then costs a million B-tree inserts on
import and a million row objects on every make-dataset, ~4 s next to the ~0.75 s that
parsing the CSV takes. Messages are only ever written once and read back in order, whole imports at a
time, so a row per block loses nothing the studio uses and turns both directions into a few
hundred C-level joins and splits.

Packing: a string column is "\\x00" + the values joined by "\\x00" (split back at C speed),
or a JSON list where a value itself holds "\\x00"; `ts` is little-endian float64 (NaN: the
source has no time), `is_me` one byte per message; `meta` is a JSON object of columns
({"field": [value per message, null where absent]}), "{}" when no message has any.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

INSERT = (
    "INSERT INTO message_blocks (import_id, first_seq, n, ts, is_me, chat, speaker, speaker_id, kind, text, meta)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
SELECT = (
    "SELECT first_seq, n, ts, is_me, chat, speaker, speaker_id, kind, text, meta"
    " FROM message_blocks WHERE import_id = ? ORDER BY first_seq"
)
STRING_COLUMNS = ("chat", "speaker", "speaker_id", "kind", "text")


@dataclass
class Block:
    """Consecutive messages of one import, column by column (all columns have length n)."""

    ts: np.ndarray  # float64, NaN where the source has no time
    chat: list[str]
    speaker: list[str]
    speaker_id: list[str]
    kind: list[str]
    text: list[str]
    is_me: bytes = b""  # one 0/1 byte per message; set by the importer (who is "me")
    meta: dict[str, list[Any]] = field(default_factory=dict)
    first_seq: int = 1

    def __len__(self) -> int:
        return len(self.text)


def pack_strings(values: Sequence[str]) -> str:
    joined = "\x00".join(values)
    if joined.count("\x00") == len(values) - 1:
        return "\x00" + joined
    return json.dumps(list(values), ensure_ascii=False)


def unpack_strings(packed: str, n: int) -> list[str]:
    if packed.startswith("\x00"):
        values = packed[1:].split("\x00")
    else:
        values = json.loads(packed)
    if len(values) != n:
        raise ValueError(f"packed column holds {len(values)} values, expected {n}")
    return values


def pack(import_id: int, block: Block) -> tuple[Any, ...]:
    n = len(block)
    ts = np.ascontiguousarray(block.ts, dtype="<f8")
    if len(ts) != n or len(block.is_me) != n:
        raise ValueError("block columns differ in length")
    return (
        import_id, block.first_seq, n, ts.tobytes(), block.is_me,
        *(pack_strings(getattr(block, c)) for c in STRING_COLUMNS),
        json.dumps(block.meta, ensure_ascii=False) if block.meta else "{}",
    )


def unpack(row: Sequence[Any]) -> Block:
    first_seq, n, ts, is_me, *strings, meta = row
    cols = [unpack_strings(s, n) for s in strings]
    return Block(
        np.frombuffer(ts, dtype="<f8"), *cols, is_me=bytes(is_me),
        meta=json.loads(meta) if meta != "{}" else {}, first_seq=first_seq,
    )


def read_blocks(db: sqlite3.Connection, import_id: int) -> Iterator[Block]:
    cur = db.cursor()
    cur.row_factory = None
    for row in cur.execute(SELECT, (import_id,)):
        yield unpack(row)


def meta_columns(metas: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Per-message meta dicts -> the columnar form a Block holds (null where a key is absent)."""
    keys: dict[str, None] = {}
    for m in metas:
        if m:
            keys.update(dict.fromkeys(m))
    return {k: [m.get(k) for m in metas] for k in keys}


def blocks_of(messages: Iterable[Any], size: int = 4096) -> Iterator[Block]:
    """Group `ingest.Message`s into Blocks (`is_me` left empty). A source's roles and sample
    boundaries (generic datasets) travel as the meta columns "role" and "conv"."""
    seq = 1
    messages = iter(messages)
    while True:
        part = list(islice(messages, size))
        if not part:
            return
        metas = []
        for m in part:
            meta = m.meta
            if m.role is not None:
                meta = {**meta, "role": m.role, "conv": m.conv}
            metas.append(meta)
        yield Block(
            np.array([np.nan if m.ts is None else m.ts for m in part], dtype="<f8"),
            [m.chat for m in part], [m.speaker for m in part], [m.speaker_id or m.speaker for m in part],
            [m.kind for m in part], [m.text for m in part], meta=meta_columns(metas), first_seq=seq,
        )
        seq += len(part)
