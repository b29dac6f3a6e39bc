"""WeChat-style CSV, as PyWxDump/WeClone users export it.

Header `id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime[,is_forward]`;
`msg` may hold newlines inside quotes, so the csv module reads a text stream (never
line-splitting ourselves). is_sender=1 is the account owner, who becomes speaker "me".
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persona_studio.ingest.base import ImportError_, Kind, Message
from persona_studio.ingest.common import ReadStats, parse_wall_time, where
from persona_studio.ingest.encoding import open_text

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


# One record as the importer stores it: (ts, chat, speaker, speaker_id, kind, text, meta JSON).
Row = tuple[float, str, str, str, str, str, str]


def read(path: Path, encoding: str, stats: ReadStats) -> Iterator[Message]:
    return _records(path, encoding, stats, as_rows=False)


def read_rows(path: Path, encoding: str, stats: ReadStats) -> Iterator[Row]:
    """The records of `read` as plain tuples with `meta` already JSON (as `json.dumps(meta,
    ensure_ascii=False)` writes it): the importer's bulk path, which skips a Message object
    and a JSON encoding per row. Same records, same order, same stats and errors."""
    return _records(path, encoding, stats, as_rows=True)


def _records(path: Path, encoding: str, stats: ReadStats, as_rows: bool) -> Iterator[Any]:
    """Messages, or `Row`s when `as_rows` (one loop for both, so they cannot drift apart)."""
    # Runs once per row of exports with millions of rows: everything the loop touches is a
    # local, and the common shapes (known type, is_sender exactly "0"/"1") take the short path.
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(min(_FIELD_LIMIT, sys.maxsize))
    with open_text(path, encoding) as f:
        rows = csv.reader(f, strict=True)
        try:
            header = next(rows)
        except StopIteration:
            raise ImportError_(f"{path}: empty file") from None
        except csv.Error as exc:
            raise ImportError_(f"{path}:1: bad CSV header ({exc})") from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ImportError_(f"{path}:1: missing CSV column(s): {', '.join(missing)}")
        col = {name: header.index(name) for name in KNOWN if name in header}
        i_type, i_sender, i_talker = col["type_name"], col["is_sender"], col["talker"]
        i_msg, i_time = col["msg"], col["CreateTime"]
        i_room = col.get("room_name")
        i_svr = col.get("MsgSvrID")
        i_fwd = col.get("is_forward")
        width = max(col.values()) + 1
        kinds_get = KINDS.get
        add_bad = stats.add_bad
        last = 1  # the line the previous record ended on: a record may span lines
        try:
            for row in rows:
                start, last = last + 1, rows.line_num
                if not row:
                    continue
                if len(row) < width:
                    add_bad(where(path, start), f"{len(row)} fields, expected {len(header)}")
                    continue
                try:
                    ts = parse_wall_time(row[i_time])
                except ValueError:
                    add_bad(where(path, start), f"bad CreateTime {row[i_time][:40]!r}")
                    continue
                sender = row[i_sender]
                if sender != "0" and sender != "1":
                    sender = sender.strip()
                    if sender not in ("0", "1"):
                        add_bad(where(path, start), f"bad is_sender {sender[:20]!r}")
                        continue
                svr = row[i_svr] if i_svr is not None else ""
                forward = i_fwd is not None and row[i_fwd].strip() not in ("", "0")
                type_name = row[i_type]
                kind = kinds_get(type_name)
                if kind is None:
                    type_name = type_name.strip()
                    kind = kinds_get(type_name, "other")
                talker = row[i_talker]
                text = row[i_msg]
                if "\r" in text:  # quoted newlines keep the file's CRLF; messages use "\n"
                    text = text.replace("\r\n", "\n")
                if sender == "1":
                    speaker, speaker_id = ME, "is_sender:1"
                else:
                    speaker, speaker_id = talker, talker
                chat = row[i_room] if i_room is not None else ""
                stats.read += 1
                meta: str | dict[str, object]
                if as_rows and kind != "other" and not forward and (not svr or svr.isalnum()):
                    # The usual row: its meta JSON written directly. Letters and digits are never
                    # escaped by json.dumps(ensure_ascii=False), so this is the same text.
                    if svr:
                        meta = f'{{"is_sender": {sender}, "MsgSvrID": "{svr}"}}'
                    else:
                        meta = f'{{"is_sender": {sender}}}'
                else:
                    fields: dict[str, object] = {"is_sender": int(sender)}
                    if svr:
                        fields["MsgSvrID"] = svr
                    if forward:
                        fields["is_forward"] = 1
                    if kind == "other":
                        fields["type_name"] = type_name
                    meta = json.dumps(fields, ensure_ascii=False) if as_rows else fields
                if as_rows:
                    yield ts, chat, speaker, speaker_id, kind, text, meta
                else:
                    yield Message(ts, speaker, text, kind, speaker_id, chat, meta=meta)
        except csv.Error as exc:
            raise ImportError_(f"{path}:{last + 1}: bad CSV ({exc})") from None
