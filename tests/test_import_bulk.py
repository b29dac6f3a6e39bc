"""Raw messages in blocks (store/blocks.py): the WeChat column-wise path reads exactly what the
row-by-row path reads, blocks round-trip, a failed import leaves no block behind, and a v1
database (a row per message) migrates to blocks."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from persona_studio import ingest
from persona_studio.errors import UserError
from persona_studio.importer import import_files
from persona_studio.ingest import wechat
from persona_studio.ingest.wechat_arrow import ArrowColumns
from persona_studio.store import Store
from persona_studio.store.blocks import Block, pack, read_blocks, unpack
from persona_studio.store.schema import MIGRATIONS
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import CHAT, add_persona, wechat_csv

HEADER = "id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime\n"


def test_pack_round_trips_every_column() -> None:
    block = Block(
        np.array([1.5, np.nan, 3.0]), ["", "room", "室"], ["me", "bob", "李四"], ["is_sender:1", "bob", "李四"],
        ["text", "image", "text"], ["hi", "has \x00 a nul", "多行\n消息"], is_me=b"\x01\x00\x00",
        meta={"MsgSvrID": ["1", None, "3"]}, first_seq=7,
    )
    row = pack(42, block)
    assert row[0] == 42
    back = unpack(row[1:])
    assert np.isnan(back.ts[1]) and back.ts[0] == 1.5 and back.ts[2] == 3.0
    for col in ("chat", "speaker", "speaker_id", "kind", "text", "is_me", "meta", "first_seq"):
        assert getattr(back, col) == getattr(block, col), col


def _big_csv(path: Path, n: int, odd: dict[int, str]) -> Path:
    """n rows; row i (1-based) is replaced by odd[i] when given."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(HEADER)
        for i in range(1, n + 1):
            if i in odd:
                fh.write(odd[i])
                continue
            sender = i % 3 == 0
            msg = f'"line {i}\r\nsecond line"' if i % 101 == 0 else f"msg {i}"
            fh.write(f"{i},{900 + i},文本,{int(sender)},bob,,{msg},,2024-05-{1 + i % 28:02d} 10:{i % 60:02d}:{i % 60:02d}\n")
    return path


def _read_all(path: Path) -> tuple[list[ingest.Message], ingest.ReadStats]:
    stats = ingest.ReadStats()
    return list(ingest.read(path, stats=stats)), stats


def _row_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every chunk goes row by row through the csv module: the reference reader."""
    monkeypatch.setattr(ArrowColumns, "block", lambda self, chunk: None)


def _count_arrow_blocks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the size of every Block the Arrow path makes (None: the chunk went row by row)."""
    made: list[int] = []
    real = ArrowColumns.block

    def spy(self: ArrowColumns, chunk: Any) -> Any:
        block = real(self, chunk)
        made.append(-1 if block is None else len(block))
        return block

    monkeypatch.setattr(ArrowColumns, "block", spy)
    return made


def test_column_path_reads_what_the_row_path_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = {
        300: '300,1200,动画表情,0,bob,,[sticker],,2024-05-02 10:00:00\n',
        9000: '9000,,新类型,1,bob,,?,,2024-05-02 10:00:00\n',  # unknown type -> "other", no MsgSvrID
        9001: '9001,1,文本,0,bob,,bad time,,昨天\n',
        9002: '9002,1,文本,0,bob\n',
        9003: '9003,1,文本,2,bob,,bad sender,,2024-05-02 10:00:00\n',
    }
    path = _big_csv(tmp_path / "big.csv", 12000, odd)
    monkeypatch.setattr(wechat, "CHUNK_BYTES", 1 << 14)  # many chunks: most by Arrow, a few row by row
    made = _count_arrow_blocks(monkeypatch)
    fast, fast_stats = _read_all(path)
    assert sum(n for n in made if n > 0) > 11000 and made.count(-1) == 1  # rows 9001-9003 share a chunk
    _row_path_only(monkeypatch)
    slow, slow_stats = _read_all(path)
    assert fast == slow
    assert fast_stats == slow_stats
    assert fast_stats.read == 12000 - 3 and fast_stats.bad == 3
    # line numbers count the quoted line breaks of the rows before (one every 101 rows)
    lines = {f"{path}:{9001 + 1 + 9000 // 101}", f"{path}:{9002 + 1 + 9000 // 101}", f"{path}:{9003 + 1 + 9000 // 101}"}
    assert {e.split(": ")[0] for e in fast_stats.bad_examples} == lines
    other = next(m for m in fast if m.kind == "other")
    assert other.meta == {"is_sender": 1, "type_name": "新类型"}
    assert fast[0].meta == {"is_sender": 0, "MsgSvrID": "901"} and fast[0].ts == 1714644061.0
    assert fast[100].text == "line 101\nsecond line"


def _odd_csv(path: Path, n: int, seed: int = 7) -> Path:
    """Everything the readers must agree on, scattered: quoted fields with CRLF, lone CR, LF and
    escaped quotes; unknown and padded type names; forwarded messages; empty MsgSvrID; a
    padded is_sender; blank lines; and now and then a short row, a bad time or a bad sender."""
    rng = random.Random(seed)
    header = "id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime,is_forward\r\n"
    types = ["文本"] * 6 + ["图片", "新类型", " 文本 ", "撤回消息"]
    msgs = ["hi", '"two\r\nlines"', '"lone\rcr"', '"say ""hi"", ok"', '"a, b\nc"', "你好", '""', "x"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(header)
        for i in range(1, n + 1):
            roll = rng.random()
            if roll < 0.004:
                fh.write(rng.choice([f"{i},1,文本\r\n", f"{i},1,文本,0,bob,,m,,2024-02-30 10:00:00,0\r\n",
                                     f"{i},1,文本,x,bob,,m,,2024-02-01 10:00:00,0\r\n", "\r\n"]))
                continue
            sender = rng.choice(["0", "1", "1", " 1"])
            svr = "" if roll < 0.05 else str(10**18 + i)
            fwd = rng.choice(["0", "0", "0", "", "1"])
            room = rng.choice(["", "room@chatroom", "群"])
            stamp = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{i * 7 % 61:02d}"
            fh.write(f"{i},{svr},{rng.choice(types)},{sender},{rng.choice(['bob', '李四', 'me'])},{room},"
                     f"{rng.choice(msgs)},,{stamp},{fwd}\r\n")
    return path


def test_arrow_and_row_paths_agree_on_odd_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _odd_csv(tmp_path / "odd.csv", 20000)
    monkeypatch.setattr(wechat, "CHUNK_BYTES", 1 << 13)
    made = _count_arrow_blocks(monkeypatch)
    fast, fast_stats = _read_all(path)
    assert made.count(-1) >= 10 and sum(n for n in made if n > 0) > 5000  # both paths ran
    _row_path_only(monkeypatch)
    slow, slow_stats = _read_all(path)
    assert fast_stats == slow_stats and fast_stats.bad > 20
    assert fast == slow
    kinds = {m.kind for m in fast}
    assert {"text", "image", "recall", "other"} <= kinds
    assert any(m.text == "two\nlines" for m in fast) and any(m.text == "lone\rcr" for m in fast)
    assert any(m.meta.get("is_forward") == 1 for m in fast) and any("MsgSvrID" not in m.meta for m in fast)
    # a forwarded text is someone else's words: kind "forward" on both paths, never "text"
    assert "forward" in kinds and not any(m.kind == "text" and m.meta.get("is_forward") for m in fast)
    assert {m.speaker for m in fast} == {"me", "bob", "李四"}


def test_chunk_boundaries_do_not_change_what_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk sizes that cut anywhere (inside CRLF pairs, quoted fields, multi-byte characters)."""
    path = _odd_csv(tmp_path / "odd.csv", 600, seed=3)
    reference, ref_stats = _read_all(path)
    for size in (64, 97, 1000, 4099):
        monkeypatch.setattr(wechat, "CHUNK_BYTES", size)
        got, stats = _read_all(path)
        assert got == reference and stats == ref_stats, size


def test_broken_quote_deep_in_a_file_names_the_record_start(tmp_path: Path) -> None:
    path = _big_csv(tmp_path / "big.csv", 10000, {9500: '9500,1,文本,1,bob,,"never closed,,2024-05-02 10:00:00\n'})
    with pytest.raises(UserError) as err:
        list(ingest.read(path))
    # the open quote swallows lines up to the next quoted row; the error still names the start
    assert str(err.value).startswith(f"{path}:{9500 + 1 + 9499 // 101}: bad CSV (")


def _blocks_state(ws: Workspace) -> tuple[int, int]:
    with ws.store() as store:
        return tuple(store.query("SELECT count(*), coalesce(sum(n), 0) FROM message_blocks")[0])  # type: ignore[return-value]


def test_failed_import_leaves_no_block_behind(workspace: Workspace, tmp_path: Path) -> None:
    add_persona(workspace, "alice")
    import_files(workspace, "alice", [wechat_csv(tmp_path / "good.csv", CHAT)], me="me")
    before = _blocks_state(workspace)
    assert before[1] > 0
    big = wechat_csv(tmp_path / "big.csv", CHAT * 2000)  # many blocks written before the error
    with big.open("a", encoding="utf-8") as fh:
        fh.write('999,1,文本,1,bob,,"never closed quote,,2024-10-04 12:00:00\n')
    with pytest.raises(UserError):
        import_files(workspace, "alice", [big], me="me")
    assert _blocks_state(workspace) == before
    with workspace.store() as store:
        assert store.query("PRAGMA integrity_check")[0][0] == "ok"


def test_v1_messages_migrate_to_blocks(tmp_path: Path) -> None:
    db_path = tmp_path / "studio.db"
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.executescript(MIGRATIONS[0])  # type: ignore[arg-type]
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO imports (id, persona_id, path, sha256, format, me) VALUES (1, 'p', 'x', 's', 'wechat', 'me')")
    rows = [(1, seq, None if seq == 2 else 100.0 + seq, "", "me" if seq % 2 else "bob", "", seq % 2, "text",
             f"m{seq}", json.dumps({"MsgSvrID": str(seq)}) if seq == 3 else "{}") for seq in range(1, 5001)]
    conn.executemany("INSERT INTO messages (import_id, seq, ts, chat, speaker, speaker_id, is_me, kind, text, meta)"
                     " VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    conn.close()
    with Store.open(db_path) as store:
        assert store.version == len(MIGRATIONS)
        tables = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "messages" not in tables
        blocks = list(read_blocks(store.conn, 1))
    assert [b.first_seq for b in blocks] == [1, 4097]
    text = [t for b in blocks for t in b.text]
    assert text == [f"m{seq}" for seq in range(1, 5001)]
    assert np.isnan(blocks[0].ts[1]) and blocks[0].ts[0] == 101.0
    assert blocks[0].is_me[:4] == b"\x01\x00\x01\x00"
    assert blocks[0].meta["MsgSvrID"][:4] == [None, None, "3", None]
