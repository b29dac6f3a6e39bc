"""Raw messages are stored in blocks: one `message_blocks` row per run of consecutive messages
of one import, holding one Apache Arrow record batch (an IPC stream in a BLOB).

Why not one row per message: a 1M-message export then costs a million B-tree inserts on
import and a million row objects on every make-dataset. Messages are only ever written once
and read back in order, whole imports at a time, so a row per block loses nothing the studio
uses. Why Arrow: the WeChat reader parses a CSV straight into Arrow columns, make-dataset
works on them with numpy/arrow compute, and the stored blob (zstd-compressed buffers) is read
back with no per-message decoding; nothing in between makes a Python object per message.

A block's batch has these columns, in this order, all of length n:
    ts          float64   POSIX seconds, NaN where the source has no time
    is_me       uint8     0/1, set by the importer (who is "me")
    chat, speaker, speaker_id, kind   string or dictionary<int32, string>
    text        string
    meta:<key>  one per meta field, null where a message lacks it: a native Arrow type
                (int64, string, float64, bool) when the values are all of that Python type,
                else JSON text with field metadata {"json": "1"}
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Container, Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pyarrow is imported where a block is built or read, not with the store
    import pyarrow as pa

INSERT = "INSERT INTO message_blocks (import_id, first_seq, n, data) VALUES (?,?,?,?)"
SELECT = "SELECT first_seq, n, data FROM message_blocks WHERE import_id = ? ORDER BY first_seq"
STRING_COLUMNS = ("chat", "speaker", "speaker_id", "kind", "text")
COLUMNS = ("ts", "is_me", *STRING_COLUMNS)
META = "meta:"
_JSON = {b"json": b"1"}


class Block:
    """Consecutive messages of one import: `batch` (see the module doc) and the `first_seq`
    (1-based place in its import) of its first message.

    The Python views (`ts`, `chat`, … `meta`) are built on first use and cached, for code that
    wants lists; bulk code should work on `batch` (see `codes`)."""

    __slots__ = ("_views", "batch", "first_seq")

    def __init__(
        self,
        ts: Any,
        chat: Sequence[str],
        speaker: Sequence[str],
        speaker_id: Sequence[str],
        kind: Sequence[str],
        text: Sequence[str],
        is_me: Any = b"",
        meta: dict[str, Sequence[Any]] | None = None,
        first_seq: int = 1,
    ):
        import pyarrow as pa

        n = len(text)
        columns = [pa.array(np.asarray(ts, dtype=np.float64)), _uint8(is_me, n),
                   *(pa.array(list(c), pa.string()) for c in (chat, speaker, speaker_id, kind, text))]
        encoded = {key: _meta_array(values) for key, values in (meta or {}).items()}
        self.batch = make_batch(columns, {k: a for k, (a, _) in encoded.items()},
                                json_keys={k for k, (_, is_json) in encoded.items() if is_json})
        self.first_seq = first_seq
        self._views: dict[str, Any] = {}

    @classmethod
    def of(cls, batch: pa.RecordBatch, first_seq: int = 1) -> Block:
        """A Block around an existing batch (no copy); its columns must be the canonical ones."""
        if tuple(batch.schema.names[:len(COLUMNS)]) != COLUMNS:
            raise ValueError(f"not a message block: columns {batch.schema.names[:len(COLUMNS)]}")
        self = cls.__new__(cls)
        self.batch = batch
        self.first_seq = first_seq
        self._views = {}
        return self

    def __len__(self) -> int:
        return self.batch.num_rows

    def __repr__(self) -> str:
        return f"Block(first_seq={self.first_seq}, n={len(self)}, columns={self.batch.schema.names})"

    def _view(self, name: str) -> Any:
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = _python_view(self.batch, name)
        return view

    @property
    def ts(self) -> np.ndarray:
        return self._view("ts")

    @property
    def chat(self) -> list[str]:
        return self._view("chat")

    @property
    def speaker(self) -> list[str]:
        return self._view("speaker")

    @property
    def speaker_id(self) -> list[str]:
        return self._view("speaker_id")

    @property
    def kind(self) -> list[str]:
        return self._view("kind")

    @property
    def text(self) -> list[str]:
        return self._view("text")

    @property
    def meta(self) -> dict[str, list[Any]]:
        return self._view("meta")

    @property
    def is_me(self) -> bytes:
        return self._view("is_me")

    @is_me.setter
    def is_me(self, value: Any) -> None:
        import pyarrow as pa

        columns = list(self.batch.columns)
        columns[COLUMNS.index("is_me")] = _uint8(value, len(self))
        self.batch = pa.RecordBatch.from_arrays(columns, schema=self.batch.schema)  # no copy of the rest
        self._views.pop("is_me", None)


def make_batch(columns: Sequence[pa.Array], meta: dict[str, pa.Array],
               json_keys: Container[str] = ()) -> pa.RecordBatch:
    """A block's batch from its columns (in COLUMNS order) and meta columns (`json_keys`: those
    holding JSON text)."""
    import pyarrow as pa

    fields = [pa.field(name, a.type, nullable=False) for name, a in zip(COLUMNS, columns, strict=True)]
    fields += [pa.field(META + key, a.type, metadata=_JSON if key in json_keys else None) for key, a in meta.items()]
    arrays = [*columns, *meta.values()]
    if any(len(a) != len(arrays[0]) for a in arrays):
        raise ValueError("block columns differ in length")
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _python_view(batch: pa.RecordBatch, name: str) -> Any:
    if name == "ts":
        return batch.column("ts").to_numpy(zero_copy_only=False)
    if name == "is_me":
        return batch.column("is_me").to_numpy(zero_copy_only=False).tobytes()
    if name == "meta":
        meta = {}
        for field, column in zip(batch.schema, batch.columns, strict=True):
            if field.name.startswith(META):
                values = column.to_pylist()
                if field.metadata == _JSON:
                    values = [None if v is None else json.loads(v) for v in values]
                meta[field.name[len(META):]] = values
        return meta
    column = batch.column(name)
    if hasattr(column, "dictionary"):  # a few distinct values: decode each once
        values = column.dictionary.to_pylist()
        return list(map(values.__getitem__, column.indices.to_numpy(zero_copy_only=False).tolist()))
    return column.to_pylist()


def _uint8(value: Any, n: int) -> pa.Array:
    """An is_me column: zeros for b"" (not decided yet), else bytes / numpy / arrow 0/1 values."""
    import pyarrow as pa

    if isinstance(value, pa.Array | pa.ChunkedArray):
        value = value.to_numpy(zero_copy_only=False)
    if isinstance(value, bytes | bytearray | memoryview):
        array = np.frombuffer(value, dtype=np.uint8) if len(value) else np.zeros(n, np.uint8)
    else:
        array = np.asarray(value).astype(np.uint8, copy=False)
    if len(array) != n:
        raise ValueError(f"is_me has {len(array)} values for {n} messages")
    return pa.array(array, pa.uint8())


_NATIVE = {int: "int64", str: "string", float: "float64", bool: "bool_"}  # pyarrow type factories


def _meta_array(values: Sequence[Any]) -> tuple[pa.Array, bool]:
    """(column, is_json): native when every non-null value has one plain type, else JSON."""
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.nulls(len(values), pa.string()), False
    if len(kinds) == 1 and (kind := kinds.pop()) in _NATIVE:
        try:
            return pa.array(values, getattr(pa, _NATIVE[kind])()), False
        except (OverflowError, pa.ArrowInvalid):  # an int beyond int64
            pass
    encoded = [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
    return pa.array(encoded, pa.string()), True


def codes(column: Any) -> tuple[np.ndarray, list[str]]:
    """(int32 index per message, distinct values) of a string or dictionary column, so a
    column can be counted/compared per distinct value: values[codes[i]] is message i's value.
    The values are distinct (dictionary entries that repeat are merged)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    indices = column.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    values = column.dictionary.to_pylist()
    if len(set(values)) != len(values):
        distinct = list(dict.fromkeys(values))
        place = {v: i for i, v in enumerate(distinct)}
        indices = np.array([place[v] for v in values], dtype=np.int32)[indices]
        values = distinct
    return indices, values


def value_counts(column: Any, seen: Container[str] = ()) -> list[tuple[str, int]]:
    """(value, count) of a string/dictionary column, each value present once, in the order
    values first appear in the column when some value is not in `seen` (callers that keep a
    Counter across blocks pass it, so ties keep first-seen order at no cost once all are known)."""
    indices, values = codes(column)
    counts = np.bincount(indices, minlength=len(values)).tolist()
    present = [i for i, c in enumerate(counts) if c]
    if any(values[i] not in seen for i in present):
        firsts = np.unique(indices, return_index=True)
        present = firsts[0][np.argsort(firsts[1], kind="stable")].tolist()
    merged: dict[str, int] = {}
    for i in present:
        merged[values[i]] = merged.get(values[i], 0) + counts[i]
    return list(merged.items())


def pack(import_id: int, block: Block) -> tuple[Any, ...]:
    """The `INSERT` parameters of a block: its batch as one Arrow IPC stream."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, block.batch.schema, options=_write_options()) as writer:
        writer.write_batch(block.batch)
    return import_id, block.first_seq, len(block), sink.getvalue()


def _write_options() -> Any:
    """zstd-compressed buffers: chat text shrinks ~6x (74 -> 12 MB for the 1M-message bench
    export), and compressing (Arrow spreads it over the cores) costs less than SQLite writing,
    and later checkpointing, the difference; reading it back costs ~0.05 s per 1M messages."""
    import pyarrow as pa

    return pa.ipc.IpcWriteOptions(compression="zstd" if pa.Codec.is_available("zstd") else None)


def unpack(row: Sequence[Any]) -> Block:
    """A `SELECT` row (first_seq, n, data) -> Block (buffers decompressed; uncompressed ones,
    as blocks written before compression was on, point into `data`)."""
    import pyarrow as pa

    first_seq, n, data = row
    batch = pa.ipc.open_stream(pa.py_buffer(data)).read_next_batch()
    if batch.num_rows != n:
        raise ValueError(f"stored block holds {batch.num_rows} messages, expected {n}")
    return Block.of(batch, first_seq)


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
