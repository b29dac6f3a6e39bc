"""WeChatMsg's CSV (the tool later called MemoTrace / 留痕): the rows of WeChat's own message
table, read under the `wechat` format next to the PyWxDump/WeClone shape (ingest/wechat.py).

Header `localId,TalkerId,Type,SubType,IsSender,CreateTime,Status,StrContent,StrTime,Remark,
NickName,Sender`. `Type`/`SubType` are WeChat's numeric message types (1 text, 3 image, 34
voice, 43 video, 47 sticker, 49 app messages whose SubType says file, link or quote reply
(57), 10000 notices, …); `CreateTime` is Unix seconds (`StrTime` the same as local text);
`IsSender` 1 is the account owner, who becomes speaker "me" as in the other WeChat shape. A
quote reply's StrContent may be the app message's XML: its `<title>` is the reply; the quoted
text (`<refermsg>`) is someone else's words and is not kept.
"""

from __future__ import annotations

import csv
import html
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from persona_studio.ingest.base import ImportError_, Kind, Message
from persona_studio.ingest.common import ReadStats, parse_wall_time, where
from persona_studio.ingest.encoding import open_text

REQUIRED = ("Type", "IsSender", "CreateTime", "StrContent")
ME, ME_ID = "me", "is_sender:1"  # as ingest/wechat.py, so both shapes of one account agree

_TYPES: dict[int, Kind] = {1: "text", 3: "image", 34: "voice", 43: "video", 47: "sticker", 62: "video",
                           10000: "system", 37: "system"}
_APP_SUBTYPES: dict[int, Kind] = {57: "quote", 6: "file", 8: "sticker"}
_TITLE = re.compile(r"<title>(.*?)</title>", re.S)
_RECALL = ("撤回", "recalled", "withdrew")


def sniff(head: str) -> bool:
    first = head.split("\n", 1)[0].strip("\r\ufeff ")
    cols = {c.strip().strip('"') for c in first.split(",")}
    return set(REQUIRED) <= cols


def kind_of(type_code: str, sub_code: str, text: str) -> Kind:
    try:
        t = int(type_code)
    except ValueError:
        return "other"
    if t == 49:
        try:
            return _APP_SUBTYPES.get(int(sub_code or 0), "other")
        except ValueError:
            return "other"
    if t == 10002:  # a revoked message or a "pat": the notice says which
        return "recall" if any(w in text for w in _RECALL) else "system"
    return _TYPES.get(t, "other")


def app_text(text: str) -> str:
    """The reply of a quote message: its XML's first <title>, or the text as it is."""
    if "<appmsg" not in text and not text.lstrip().startswith("<?xml"):
        return text
    m = _TITLE.search(text.split("<refermsg>", 1)[0])
    return html.unescape(m.group(1)).strip() if m else ""


def read(path: Path, encoding: str, stats: ReadStats) -> Iterator[Message]:
    if csv.field_size_limit() < 16 << 20:
        csv.field_size_limit(min(16 << 20, sys.maxsize))  # a pasted article outgrows csv's 128 KiB
    f = open_text(path, encoding)
    reader = csv.reader(f)
    header = [c.strip().lstrip("\ufeff").strip('"') for c in next(reader, [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        f.close()
        raise ImportError_(f"{where(path, 1)}: missing column(s) {', '.join(missing)} (WeChatMsg CSV)")
    return _rows(path, f, reader, header, stats)


def _rows(path: Path, f: TextIO, reader: Any, header: list[str], stats: ReadStats) -> Iterator[Message]:
    col = {name: i for i, name in enumerate(header)}

    def get(row: list[str], name: str) -> str:
        i = col.get(name)
        return row[i] if i is not None and i < len(row) else ""

    width = max(col[c] for c in REQUIRED) + 1
    with f:
        end = reader.line_num
        for row in reader:
            line, end = end + 1, reader.line_num  # a row's first line (a quoted field may span lines)
            if not row:
                continue
            if len(row) < width:
                stats.add_bad(where(path, line), f"{len(row)} fields, expected {len(header)}")
                continue
            sender = get(row, "IsSender").strip()
            if sender not in ("0", "1"):
                stats.add_bad(where(path, line), f"bad IsSender {sender[:20]!r}")
                continue
            created = get(row, "CreateTime").strip()
            try:
                ts = float(created) if created.isdigit() else parse_wall_time(get(row, "StrTime") or created)
            except ValueError:
                stats.add_bad(where(path, line), f"bad CreateTime {created[:40]!r}")
                continue
            text = get(row, "StrContent").replace("\r\n", "\n")
            kind = kind_of(get(row, "Type"), get(row, "SubType"), text)
            if kind == "quote":
                text = app_text(text)
            talker = get(row, "TalkerId").strip()
            room = talker if talker.endswith("@chatroom") else ""
            if sender == "1":
                speaker, speaker_id = ME, ME_ID
            else:
                speaker = next((n.strip() for n in (get(row, "Sender"), get(row, "Remark"), get(row, "NickName"))
                                if n.strip()), talker)
                speaker_id = speaker if room else (talker or speaker)
            meta: dict[str, object] = {"is_sender": int(sender)}
            if get(row, "localId"):
                meta["localId"] = get(row, "localId")
            if kind == "other":
                meta["type"] = f"{get(row, 'Type')}/{get(row, 'SubType')}"
            stats.read += 1
            yield Message(ts=ts, speaker=speaker, text=text, kind=kind, speaker_id=speaker_id, chat=room, meta=meta)
