"""WeChat-style CSV, as PyWxDump/WeClone users export it (WeChatMsg's CSV, WeChat's own
message table columns, is ingest/wechatmsg.py, read under the same format name: `_SHAPES` in
ingest/__init__.py).

Header `id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime[,is_forward]`;
`msg` may hold newlines inside quotes. is_sender=1 is the account owner, who becomes speaker
"me". Variants read too: older WeChatMsg/PyWxDump exports with a `content` column holding
`{"src": …, "msg": …}` (JSON or a Python dict literal) instead of `msg`; ISO 8601 CreateTime
with `T`, `Z` or an offset (WeFlow); English type names. A quote reply's quoted text
(`[引用]…`, or a `「…」` block over a `- - -` rule) is someone else's words: it is cut, the
reply kept.

Two readers, one result. The file is cut into chunks of whole records (ingest/csvchunks.py)
and pyarrow turns each into a Block with column operations (ingest/wechat_arrow.py). A chunk
holding anything unusual (a short row, an odd timestamp or is_sender, bytes that are not
UTF-8) goes row by row through the `csv` module instead (`_Columns.slow`), which counts bad
rows with their line; quoting the chunker cannot follow sends the rest of the file that way.
The row path is the reference: tests check both read the same messages.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_studio.ingest.base import ImportError_, Kind, Message, messages_of
from persona_studio.ingest.common import ReadStats, parse_wall_time, where
from persona_studio.ingest.encoding import open_utf8_bytes

if TYPE_CHECKING:
    from persona_studio.ingest.csvchunks import Chunk
    from persona_studio.store.blocks import Block

NAME = "wechat"
REQUIRED = ("type_name", "is_sender", "talker", "msg", "CreateTime")
KNOWN = ("id", "MsgSvrID", "type_name", "is_sender", "talker", "room_name", "msg", "src", "CreateTime", "is_forward",
         "content")
ME = "me"
ME_ID = "is_sender:1"
PARSERS = 2  # chunks parsed at once

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
    # English type names (WeFlow and translated tools), matched casefolded
    "text": "text", "image": "image", "picture": "image", "photo": "image", "sticker": "sticker",
    "emoji": "sticker", "animated sticker": "sticker", "quote": "quote", "reply": "quote", "system": "system",
    "system notice": "system", "voice": "voice", "audio": "voice", "video": "video", "file": "file",
    "recall": "recall", "revoke": "recall", "revoked": "recall",
}


def kind_of(type_name: str) -> Kind:
    return KINDS.get(type_name) or KINDS.get(type_name.casefold(), "other")


QUOTE_MARK = "[引用]"
_QUOTE_RULE = re.compile(r"^\s*(?:-\s){5,}-?\s*$", re.M)  # "- - - - - - -" under a 「quoted」 block


def strip_quote(text: str) -> tuple[str, bool]:
    """(the reply without the quoted text, whether a quote was cut)."""
    if QUOTE_MARK in text:
        at = text.find(QUOTE_MARK)
        if at > 0:  # "reply\n[引用]name: quoted"
            return text[:at].rstrip(), True
        # "[引用]name: quoted" first: the reply follows a rule or a blank line, else the next line
        rest = text[len(QUOTE_MARK):]
        rule = _QUOTE_RULE.search(rest)
        if rule:
            return rest[rule.end():].strip(), True
        _, _, reply = rest.partition("\n\n") if "\n\n" in rest else rest.partition("\n")
        return reply.strip(), True
    if text.startswith("「"):
        rule = _QUOTE_RULE.search(text)
        if rule and "」" in text[:rule.start()]:
            return text[rule.end():].strip(), True
    return text, False


def content_msg(value: str) -> str:
    """The text of an older export's `content` cell: `{"src": …, "msg": …}` as JSON or a Python
    dict literal; anything else is the text itself."""
    v = value.strip()
    if not (v.startswith("{") and v.endswith("}")):
        return value
    import ast
    import json

    for parse in (json.loads, ast.literal_eval):
        try:
            d = parse(v)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(d, dict) and isinstance(d.get("msg"), str):
            return d["msg"]
    return value

# A long message (a pasted article) can exceed csv's 128 KiB default field limit.
_FIELD_LIMIT = 16 << 20

# Bytes per chunk (and so per Block on the Arrow path): a few MiB, so per-chunk costs vanish
# and memory stays flat however big the export is.
CHUNK_BYTES = 4 << 20
# Rows per Block on the row path: the first batch small, then sized to about ROW_CHARS characters.
ROWS = 8192
ROW_CHARS = 1 << 18


def _header(head: str) -> list[str]:
    first = head.split("\n", 1)[0].strip("\r\ufeff ")
    return [c.strip().strip('"') for c in first.split(",")]


def sniff(head: str) -> bool:
    """A comma header naming at least three of the known columns (so a file missing some
    still reaches `read`, which names what is missing)."""
    cols = set(_header(head))
    return len(cols & set(KNOWN)) >= 3 and bool(cols & {"msg", "type_name", "talker"})


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
    """The file as Blocks (`is_me` left empty: the importer decides); see the module doc."""
    from persona_studio.ingest.csvchunks import CsvChunks
    from persona_studio.ingest.wechat_arrow import ArrowColumns

    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(min(_FIELD_LIMIT, sys.maxsize))
    with open_utf8_bytes(path, encoding) as raw:
        chunks = CsvChunks(_readinto(raw), CHUNK_BYTES)
        head = chunks.next(first_record=True)
        if head is None:
            raise ImportError_(f"{path}: empty file")
        if not head.plain:
            reader = _reader(chunks.rest(head))
            cols = _Columns(_read_header(reader, path))
            yield from _numbered(_row_blocks(reader, cols, path, reader.line_num, stats), stats)
            return
        cols = _Columns(_read_header(_reader(io.BytesIO(head.data.to_pybytes())), path))
        if cols.content_json:  # older exports: every cell's JSON is decoded in Python anyway
            reader = _reader(chunks.rest(head))
            next(reader)
            yield from _numbered(_row_blocks(reader, cols, path, reader.line_num, stats), stats)
            return
        arrow = ArrowColumns(cols)
        seq = 1
        # Two chunks parse at once (pyarrow's parser runs without the GIL); blocks come out
        # in file order. Reading stops at a chunk the chunker cannot follow, which the csv
        # module then takes from there to the end.
        ahead: deque[tuple[Chunk, Future[Block | None]]] = deque()
        tail: Chunk | None = None
        with ThreadPoolExecutor(PARSERS, thread_name_prefix="persona-studio-csv") as pool:
            while True:
                while tail is None and len(ahead) < PARSERS and (chunk := chunks.next()) is not None:
                    if not chunk.plain:
                        tail = chunk
                        break
                    ahead.append((chunk, pool.submit(arrow.block, chunk)))
                if not ahead:
                    break
                chunk, parsed = ahead.popleft()
                block = parsed.result()
                if block is None:  # something unusual in this chunk: row by row, with line numbers
                    reader = _reader(io.BytesIO(chunk.data.to_pybytes()))
                    found: Iterable[Block] = _row_blocks(reader, cols, path, chunk.line, stats)
                else:
                    found = (block,)
                for b in _numbered(found, stats, seq):
                    seq += len(b)
                    yield b
        if tail is not None:  # the chunker cannot follow this quoting: the csv module takes over
            yield from _numbered(_row_blocks(_reader(chunks.rest(tail)), cols, path, tail.line, stats), stats, seq)


def _readinto(raw: Any) -> Any:
    """`raw.readinto`, or one made of `raw.read` for the re-encoding reader (non-UTF-8 files)."""
    if isinstance(raw, io.BufferedReader):
        return raw.readinto

    def readinto(mv: memoryview) -> int:
        data = raw.read(len(mv))
        mv[:len(data)] = data
        return len(data)

    return readinto


def _reader(stream: Any) -> Any:
    """A strict csv reader over UTF-8 bytes (undecodable bytes become U+FFFD, as open_text does)."""
    return csv.reader(io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=""), strict=True)


def _read_header(reader: Any, path: Path) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise ImportError_(f"{path}: empty file") from None
    except csv.Error as exc:
        raise ImportError_(f"{path}:1: bad CSV header ({exc})") from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    have = set(header) | ({"msg"} if "content" in header else set())
    missing = [c for c in REQUIRED if c not in have]
    if missing:
        raise ImportError_(f"{path}:1: missing CSV column(s): {', '.join(missing)}")
    return header


def _numbered(blocks: Iterable[Block], stats: ReadStats, seq: int = 1) -> Iterator[Block]:
    """Non-empty blocks, numbered on from `seq` and counted as read."""
    for block in blocks:
        if len(block):
            block.first_seq = seq
            seq += len(block)
            stats.read += len(block)
            yield block


def _row_blocks(reader: Any, cols: _Columns, path: Path, line: int, stats: ReadStats) -> Iterator[Block]:
    """Row by row from a csv reader whose first record starts on line `line + 1`."""
    start = line - reader.line_num  # reader.line_num counts from where the reader started
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
        block = cols.slow(rows, path, line, stats)
        line = start + reader.line_num
        per_row = sum(map(len, block.text)) // max(1, len(block)) + 1
        size = max(16, min(ROWS, ROW_CHARS // per_row))
        yield block


class _Columns:
    """Which column is which, and the row-by-row reading of CSV rows into a Block."""

    def __init__(self, header: list[str]):
        col = {name: header.index(name) for name in KNOWN if name in header}
        self.header = header
        self.n_header = len(header)
        self.width = max(col.values()) + 1
        self.i_type, self.i_sender, self.i_talker = col["type_name"], col["is_sender"], col["talker"]
        # Older exports: a `content` column of {"src", "msg"} objects instead of `msg`.
        self.content_json = "msg" not in col
        self.i_msg, self.i_time = col["msg"] if "msg" in col else col["content"], col["CreateTime"]
        self.i_room, self.i_svr, self.i_fwd = col.get("room_name"), col.get("MsgSvrID"), col.get("is_forward")

    def slow(self, rows: list[list[str]], path: Path, line: int, stats: ReadStats) -> Block:
        """Rows -> Block: bad rows are counted (with their line: `line` is the line before the
        first row) and skipped, unknown types kept as "other" with the type name in meta."""
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
            kind = kind_of(type_name)
            text = row[self.i_msg]
            if self.content_json:
                text = content_msg(text)
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            if kind in ("text", "quote"):
                text, quoted = strip_quote(text)
                if quoted:
                    kind = "quote"
            talker = row[self.i_talker]
            fields: dict[str, Any] = {"is_sender": int(sender)}
            svr = row[self.i_svr] if self.i_svr is not None else ""
            if svr:
                fields["MsgSvrID"] = svr
            if self.i_fwd is not None and row[self.i_fwd].strip() not in ("", "0"):
                fields["is_forward"] = 1
                if kind in ("text", "quote"):
                    kind = "forward"  # someone else's words (see ingest/base.py Kind)
            if kind == "other":
                fields["type_name"] = type_name
            ts_l.append(ts)
            chat_l.append(row[self.i_room] if self.i_room is not None else "")
            speaker_l.append(ME if sender == "1" else talker)
            id_l.append(ME_ID if sender == "1" else talker)
            kind_l.append(kind)
            text_l.append(text)
            metas.append(fields)
        return Block(np.array(ts_l, dtype="<f8"), chat_l, speaker_l, id_l, kind_l, text_l,
                     meta=meta_columns(metas))
