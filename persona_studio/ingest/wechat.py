"""WeChat-style CSV, as PyWxDump/WeClone users export it.

Header `id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime[,is_forward]`;
`msg` may hold newlines inside quotes, so the csv module reads a text stream (never
line-splitting ourselves). is_sender=1 is the account owner, who becomes speaker "me".
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_studio.ingest.base import ImportError_, Kind, Message, messages_of
from persona_studio.ingest.common import ReadStats, parse_wall_time, where
from persona_studio.ingest.encoding import open_text

if TYPE_CHECKING:
    from persona_studio.store.blocks import Block

NAME = "wechat"
REQUIRED = ("type_name", "is_sender", "talker", "msg", "CreateTime")
KNOWN = ("id", "MsgSvrID", "type_name", "is_sender", "talker", "room_name", "msg", "src", "CreateTime", "is_forward")
ME = "me"

KINDS: dict[str, Kind] = {
    "文本": "text",
    "图片": "image",
    "动画表情": "sticker",
    "表情": "sticker",
    "引用回复": "quote",
    "系统通知": "system",
    "语音": "voice",
    "视频": "video",
    "文件": "file",
    "撤回消息": "recall",
}

# A long message (a pasted article) can exceed csv's 128 KiB default field limit.
_FIELD_LIMIT = 16 << 20


def _header(head: str) -> list[str]:
    first = head.split("\n", 1)[0].strip("\r\ufeff ")
    return [c.strip().strip('"') for c in first.split(",")]


def sniff(head: str) -> bool:
    """A comma header naming at least three of the known columns (so a file missing some
    still reaches `read`, which names what is missing)."""
    cols = set(_header(head))
    return len(cols & set(KNOWN)) >= 3 and ("msg" in cols or "type_name" in cols or "talker" in cols)


# Rows per Block: big enough that per-chunk costs vanish. The size adapts to the text per row
# so a chunk holds about CHUNK_CHARS characters of messages (memory stays flat for exports of
# pasted articles too); the first chunk is small, to measure.
CHUNK = 8192
CHUNK_CHARS = 1 << 18


def read(path: Path, encoding: str, stats: ReadStats) -> Iterator[Message]:
    return messages_of(read_blocks(path, encoding, stats))


def _lines(row: list[str]) -> int:
    """Lines of the file one parsed record took: 1 + the line breaks inside its quoted fields
    (the csv module counts \n, \r\n and \r alike)."""
    n = 1
    for f in row:
        if "\n" in f or "\r" in f:
            n += f.count("\n") + f.count("\r") - f.count("\r\n")
    return n


def read_blocks(path: Path, encoding: str, stats: ReadStats) -> Iterator[Block]:
    """The file as Blocks of up to CHUNK messages (`is_me` left empty: the importer decides).

    A chunk of rows becomes columns with C-level operations (itemgetter maps, one numpy
    timestamp parse, set checks); only a chunk holding something unusual (a short row, an odd
    timestamp, an unknown type, a forwarded message) takes the row-by-row path, which is the
    one that knows line numbers for its error messages."""
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(min(_FIELD_LIMIT, sys.maxsize))
    with open_text(path, encoding) as f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportError_(f"{path}: empty file") from None
        except csv.Error as exc:
            raise ImportError_(f"{path}:1: bad CSV header ({exc})") from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ImportError_(f"{path}:1: missing CSV column(s): {', '.join(missing)}")
        cols = _Columns(header)
        line = reader.line_num  # the line the previous record ended on
        seq = 1
        size = 256
        while True:
            rows: list[list[str]] = []
            try:
                rows.extend(islice(reader, size))  # extend keeps the rows read before an error
            except csv.Error as exc:
                bad_line = line + sum(map(_lines, rows)) + 1
                raise ImportError_(f"{path}:{bad_line}: bad CSV ({exc})") from None
            if not rows:
                return
            block = cols.fast(rows)
            if block is None:
                block = cols.slow(rows, path, line, stats)
            line = reader.line_num
            per_row = sum(map(len, block.text)) // max(1, len(block)) + 1
            size = max(16, min(CHUNK, CHUNK_CHARS // per_row))
            if len(block):
                stats.read += len(block)
                block.first_seq = seq
                seq += len(block)
                yield block


class _Columns:
    """Turns a chunk of CSV rows into a Block, knowing which column is which."""

    def __init__(self, header: list[str]):
        col = {name: header.index(name) for name in KNOWN if name in header}
        self.n_header = len(header)
        self.width = max(col.values()) + 1
        self.i_type, self.i_sender, self.i_talker = col["type_name"], col["is_sender"], col["talker"]
        self.i_msg, self.i_time = col["msg"], col["CreateTime"]
        self.i_room, self.i_svr, self.i_fwd = col.get("room_name"), col.get("MsgSvrID"), col.get("is_forward")

    def fast(self, rows: list[list[str]]) -> Block | None:
        """The chunk as a Block when every row is ordinary, else None (take `slow`)."""
        import numpy as np

        from persona_studio.store.blocks import Block

        if min(map(len, rows)) < self.width:
            return None
        sender = list(map(itemgetter(self.i_sender), rows))
        if not set(sender) <= {"0", "1"}:
            return None
        kind = list(map(KINDS.get, map(itemgetter(self.i_type), rows)))
        if None in kind:
            return None
        if self.i_fwd is not None and not set(map(itemgetter(self.i_fwd), rows)) <= {"", "0"}:
            return None
        ts = _wall_times(list(map(itemgetter(self.i_time), rows)))
        if ts is None:
            return None
        talker = list(map(itemgetter(self.i_talker), rows))
        text = list(map(itemgetter(self.i_msg), rows))
        if "\r" in "".join(text):  # quoted newlines keep the file's CRLF; messages use "\n"
            text = [t.replace("\r\n", "\n") for t in text]
        # dict.get(sender, talker) mapped over two columns: "me" for "1", else the talker (C speed)
        speaker = list(map({"1": ME}.get, sender, talker))
        speaker_id = list(map({"1": _ME_ID}.get, sender, talker))
        chat = list(map(itemgetter(self.i_room), rows)) if self.i_room is not None else [""] * len(rows)
        meta: dict[str, list[Any]] = {"is_sender": list(map(_SENDER.__getitem__, sender))}
        if self.i_svr is not None:
            svr = list(map(itemgetter(self.i_svr), rows))
            if "" in svr:
                svr = [s or None for s in svr]
            meta["MsgSvrID"] = svr
        return Block(np.array(ts, dtype="<f8") if isinstance(ts, list) else ts,
                     chat, speaker, speaker_id, kind, text, meta=meta)

    def slow(self, rows: list[list[str]], path: Path, line: int, stats: ReadStats) -> Block:
        """Row by row, for a chunk with something unusual: bad rows are counted (with their
        line) and skipped, unknown types kept as "other" with the type name in meta."""
        import numpy as np

        from persona_studio.store.blocks import Block, meta_columns

        out: tuple[list[Any], ...] = ([], [], [], [], [], [])
        ts_l, chat_l, speaker_l, id_l, kind_l, text_l = out
        metas: list[dict[str, Any]] = []
        add_bad = stats.add_bad
        for row in rows:
            start, line = line + 1, line + _lines(row)
            if not row:
                continue
            if len(row) < self.width:
                add_bad(where(path, start), f"{len(row)} fields, expected {self.n_header}")
                continue
            try:
                ts = parse_wall_time(row[self.i_time])
            except ValueError:
                add_bad(where(path, start), f"bad CreateTime {row[self.i_time][:40]!r}")
                continue
            sender = row[self.i_sender].strip()
            if sender not in ("0", "1"):
                add_bad(where(path, start), f"bad is_sender {sender[:20]!r}")
                continue
            type_name = row[self.i_type].strip()
            kind = KINDS.get(type_name, "other")
            text = row[self.i_msg]
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            talker = row[self.i_talker]
            fields: dict[str, Any] = {"is_sender": int(sender)}
            svr = row[self.i_svr] if self.i_svr is not None else ""
            if svr:
                fields["MsgSvrID"] = svr
            if self.i_fwd is not None and row[self.i_fwd].strip() not in ("", "0"):
                fields["is_forward"] = 1
            if kind == "other":
                fields["type_name"] = type_name
            ts_l.append(ts)
            chat_l.append(row[self.i_room] if self.i_room is not None else "")
            speaker_l.append(ME if sender == "1" else talker)
            id_l.append(_ME_ID if sender == "1" else talker)
            kind_l.append(kind)
            text_l.append(text)
            metas.append(fields)
        return Block(np.array(ts_l, dtype="<f8"), chat_l, speaker_l, id_l, kind_l, text_l,
                     meta=meta_columns(metas))


_ME_ID = "is_sender:1"
_SENDER = {"0": 0, "1": 1}
_STAMP = "0000-00-00 00:00:00"


def _wall_times(values: list[str]) -> Any:
    """POSIX seconds (wall time read as UTC, as `parse_wall_time`) of every value, or None when
    one of them is not a valid `YYYY-MM-DD HH:MM:SS` stamp (the caller goes row by row then).

    The shape is checked on the joined column with strided slices (C speed), then numpy
    parses the lot; it rejects impossible dates and times itself."""
    import numpy as np

    n = len(values)
    joined = "".join(values)
    width = len(_STAMP)
    if len(joined) != n * width:
        return None
    for i, ch in ((4, "-"), (7, "-"), (10, " "), (13, ":"), (16, ":")):
        if joined[i::width] != ch * n:
            return None
    try:
        return np.array(values, dtype="datetime64[s]").astype("<i8").astype("<f8")
    except ValueError:
        return None
