"""Message blocks as Arrow batches (store/blocks.py): the canonical columns, meta typing, the
Python views, codes/value_counts, zero-copy reads, and the v2 -> v3 migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from persona_studio import ingest
from persona_studio.store import Store
from persona_studio.store import _v2blocks as v2
from persona_studio.store.blocks import COLUMNS, Block, codes, pack, read_blocks, unpack, value_counts
from persona_studio.store.schema import MIGRATIONS

META = {
    "n": [1, None, 3],
    "s": ["a", None, "c"],
    "obj": [{"k": [1, 2]}, None, "mixed"],
    "huge": [2**70, None, None],
    "none": [None, None, None],
}


def _block(**kw: object) -> Block:
    return Block(np.array([1.0, np.nan, 3.0]), ["", "r", "r"], ["me", "bob", "李四"], ["is_sender:1", "bob", "李四"],
                 ["text", "image", "text"], ["hi", "a\x00b", "多行\n消息"], **kw)  # type: ignore[arg-type]


def test_batch_has_the_canonical_columns_and_typed_meta() -> None:
    batch = _block(meta=META).batch
    assert tuple(batch.schema.names) == (*COLUMNS, *(f"meta:{k}" for k in META))
    assert batch.schema.field("ts").type == pa.float64() and batch.schema.field("is_me").type == pa.uint8()
    assert batch.column("is_me").to_pylist() == [0, 0, 0]  # undecided until the importer runs
    assert batch.schema.field("meta:n").type == pa.int64() and batch.schema.field("meta:s").type == pa.string()
    for key in ("obj", "huge"):  # mixed types, beyond int64: JSON text, marked as such
        assert batch.schema.field(f"meta:{key}").metadata == {b"json": b"1"}
    assert batch.schema.field("meta:n").metadata is None


def test_pack_unpack_round_trips_the_views() -> None:
    block = _block(meta=META, is_me=b"\x01\x00\x01", first_seq=9)
    _, first_seq, n, data = pack(5, block)
    blob = bytes(data)  # what SQLite hands back
    back = unpack((first_seq, n, blob))
    assert back.first_seq == 9 and len(back) == 3
    for view in ("chat", "speaker", "speaker_id", "kind", "text", "is_me", "meta"):
        assert getattr(back, view) == getattr(block, view), view
    assert np.isnan(back.ts[1]) and back.ts[2] == 3.0


def test_blocks_are_stored_compressed_and_old_uncompressed_ones_still_read() -> None:
    chatty = Block(np.arange(2000, dtype=np.float64), [""] * 2000, ["bob"] * 2000, ["bob"] * 2000,
                   ["text"] * 2000, [f"message number {i % 50} again" for i in range(2000)])
    data = pack(1, chatty)[3]
    plain = pa.BufferOutputStream()
    with pa.ipc.new_stream(plain, chatty.batch.schema) as w:  # as blocks were written before
        w.write_batch(chatty.batch)
    raw = plain.getvalue()
    assert data.size * 3 < raw.size
    for blob in (bytes(data), bytes(raw)):
        back = unpack((1, 2000, blob))
        assert back.text == chatty.text and back.ts.tolist() == chatty.ts.tolist()
    start = pa.py_buffer(raw).address  # an uncompressed stream is read without copying
    text_data = unpack((1, 2000, raw)).batch.column("text").buffers()[2]
    assert start <= text_data.address < start + raw.size


def test_is_me_accepts_bytes_numpy_and_arrow() -> None:
    block = _block()
    text = block.text
    for value in (b"\x00\x01\x01", np.array([0, 1, 1], np.uint8), pa.array([0, 1, 1], pa.uint8()), [0, 1, 1]):
        block.is_me = value
        assert block.is_me == b"\x00\x01\x01" and block.batch.column("is_me").type == pa.uint8()
        block.is_me = b""
        assert block.is_me == b"\x00\x00\x00"
    assert block.text is text  # other views stay cached
    with pytest.raises(ValueError):
        block.is_me = b"\x01"


def test_codes_and_value_counts_on_string_and_dictionary_columns() -> None:
    plain = pa.array(["b", "a", "b", "c"])
    idx, values = codes(plain)
    assert [values[i] for i in idx] == plain.to_pylist() and idx.dtype == np.int32
    repeated = pa.DictionaryArray.from_arrays(pa.array([2, 0, 1, 2], pa.int32()), pa.array(["x", "y", "x"]))
    idx, values = codes(repeated)
    assert sorted(values) == ["x", "y"] and [values[i] for i in idx] == ["x", "x", "y", "x"]
    assert value_counts(repeated) == [("x", 3), ("y", 1)]
    assert value_counts(plain) == [("b", 2), ("a", 1), ("c", 1)]  # first-seen order
    assert dict(value_counts(plain, seen={"a", "b", "c"})) == {"a": 1, "b": 2, "c": 1}


def test_wechat_blocks_hold_dictionary_columns(tmp_path: Path) -> None:
    path = tmp_path / "chat.csv"
    path.write_text("id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime\n"
                    + "".join(f"{i},{i},文本,{i % 2},bob,,hi {i},,2024-05-01 10:00:00\n" for i in range(50)),
                    encoding="utf-8")
    (block,) = ingest.read_blocks(path)
    for name in ("chat", "speaker", "speaker_id", "kind"):
        assert pa.types.is_dictionary(block.batch.schema.field(name).type), name
    assert block.speaker[:2] == ["bob", "me"] and block.meta["is_sender"][:2] == [0, 1]


def test_v2_blocks_migrate_to_arrow(tmp_path: Path) -> None:
    db_path = tmp_path / "studio.db"  # a store as v2 left it
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.executescript(MIGRATIONS[0])  # type: ignore[arg-type]
    MIGRATIONS[1](conn)  # type: ignore[operator]
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO imports (id, persona_id, path, sha256, format, me) VALUES (1, 'p', 'x', 's', 'wechat', 'me')")
    ts = np.array([1.0, np.nan])
    conn.execute(v2.INSERT, v2.pack(1, 1, ts, b"\x01\x00", (["", ""], ["me", "bob"], ["me", "bob"], ["text", "text"],
                                                              ["hi", "nul \x00 inside"]), {"MsgSvrID": ["7", None]}))
    conn.execute(v2.INSERT, v2.pack(1, 3, np.array([5.0]), b"\x00", ([""], ["bob"], ["bob"], ["image"], ["x"]), {}))
    conn.close()
    with Store.open(db_path) as store:
        assert store.version == len(MIGRATIONS)
        cols = {r[1] for r in store.query("PRAGMA table_info(message_blocks)")}
        blocks = list(read_blocks(store.conn, 1))
    assert cols == {"id", "import_id", "first_seq", "n", "data"}
    assert [b.first_seq for b in blocks] == [1, 3]
    assert blocks[0].text == ["hi", "nul \x00 inside"] and blocks[0].is_me == b"\x01\x00"
    assert blocks[0].meta == {"MsgSvrID": ["7", None]} and blocks[1].meta == {}
    assert blocks[0].ts[0] == 1.0 and np.isnan(blocks[0].ts[1]) and blocks[1].kind == ["image"]
