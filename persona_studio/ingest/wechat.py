"""WeChat-style CSV, as PyWxDump/WeClone users export it.

Header `id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime[,is_forward]`;
`msg` may hold newlines inside quotes, so the csv module reads a text stream (never
line-splitting ourselves). is_sender=1 is the account owner, who becomes speaker "me".
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

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


def read(path: Path, encoding: str, stats: ReadStats) -> Iterator[Message]:
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
        end_line = 1
        while True:
            start = end_line + 1
            try:
                row = next(rows)
            except StopIteration:
                break
            except csv.Error as exc:
                raise ImportError_(f"{path}:{start}: bad CSV ({exc})") from None
            end_line = rows.line_num
            if not row:
                continue
            if len(row) < width:
                stats.add_bad(where(path, start), f"{len(row)} fields, expected {len(header)}")
                continue
            try:
                ts = parse_wall_time(row[i_time])
            except ValueError:
                stats.add_bad(where(path, start), f"bad CreateTime {row[i_time][:40]!r}")
                continue
            sender = row[i_sender].strip()
            if sender not in ("0", "1"):
                stats.add_bad(where(path, start), f"bad is_sender {sender[:20]!r}")
                continue
            meta: dict[str, object] = {"is_sender": int(sender)}
            if i_svr is not None and row[i_svr]:
                meta["MsgSvrID"] = row[i_svr]
            if i_fwd is not None and row[i_fwd].strip() not in ("", "0"):
                meta["is_forward"] = 1
            type_name = row[i_type].strip()
            kind = KINDS.get(type_name, "other")
            if kind == "other":
                meta["type_name"] = type_name
            talker = row[i_talker]
            text = row[i_msg]
            if "\r" in text:  # quoted newlines keep the file's CRLF; messages use "\n"
                text = text.replace("\r\n", "\n")
            if sender == "1":
                speaker, speaker_id = ME, "is_sender:1"
            else:
                speaker, speaker_id = talker, talker
            stats.read += 1
            yield Message(
                ts=ts, speaker=speaker, text=text, kind=kind, speaker_id=speaker_id,
                chat=row[i_room] if i_room is not None else "", meta=meta,
            )
