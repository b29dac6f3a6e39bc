"""QQ's classic text export ("消息记录", from the PC client's message manager).

```
消息记录（此消息记录为文本格式，不支持重新导入）
================================================================
消息分组:我的好友
================================================================
消息对象:张三
================================================================

2024-01-05 12:00:01 张三(12345678)
你好

2024-01-05 12:00:05 李四<lisi@qq.com>
在吗
```
A record is a `date time Nick(number)` or `… Nick<email>` line, then its text lines up to
the next record. An export of several chats repeats the `消息对象:` block for each.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from persona_studio.ingest.base import Kind, Message
from persona_studio.ingest.common import ReadStats, wall_ts, where
from persona_studio.ingest.encoding import open_text

NAME = "qq"

_RECORD = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2}) (\d{1,2}):(\d{2}):(\d{2}) (.*?)(?:\((\d{4,12})\)|<([^<>\s]+@[^<>\s]+)>)?\s*$"
)
_TARGET = re.compile(r"^消息对象[:：]\s*(.*?)\s*$")
_RULE = re.compile(r"^={8,}\s*$")
_MEDIA: dict[str, Kind] = {
    "[图片]": "image", "[表情]": "sticker", "[语音]": "voice", "[视频]": "video", "[文件]": "file",
    "[闪照]": "image", "[动画表情]": "sticker",
}
_SYSTEM_IDS = {"10000", "1000000"}


def sniff(head: str) -> bool:
    lines = [ln.strip() for ln in head.splitlines()[:60]]
    if any(ln.startswith("消息记录") for ln in lines[:3]) and any(
        ln.startswith(("消息分组", "消息对象")) for ln in lines
    ):
        return True
    # A header-less file: its first non-empty line must be a record carrying an id.
    first = next((ln for ln in lines if ln), "")
    m = _RECORD.match(first)
    return m is not None and bool(m[8] or m[9])


def _message(ts: float, nick: str, uid: str, lines: list[str], chat: str) -> Message:
    while lines and not lines[-1].strip():
        lines.pop()
    text = "\n".join(lines)
    kind: Kind = _MEDIA.get(text.strip(), "text")
    if uid in _SYSTEM_IDS or nick == "系统消息":
        kind = "system"
    if text.endswith("撤回了一条消息") and len(text) < 60:
        kind = "recall"
    return Message(ts=ts, speaker=nick, text=text, kind=kind, speaker_id=uid or nick, chat=chat)


def read(path: Path, encoding: str, stats: ReadStats) -> Iterator[Message]:
    chat = ""
    pending: tuple[float, str, str, list[str]] | None = None
    previous_blank = True
    previous_rule = False
    with open_text(path, encoding) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n").lstrip("\ufeff")
            blank = not line.strip()
            target = _TARGET.match(line) if previous_rule or pending is None else None
            m = None if target else _RECORD.match(line)
            # Without an id, a dated line only starts a record after a blank line; otherwise
            # it is more likely message text that begins with a date.
            if m is not None and not (m[8] or m[9]) and not previous_blank:
                m = None
            if target or m or _RULE.match(line):
                if pending is not None:
                    stats.read += 1
                    yield _message(*pending, chat)
                    pending = None
            if target:
                chat = target[1]
            elif m:
                y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
                try:
                    ts = wall_ts(y, mo, d, h, mi, s)
                except ValueError:
                    stats.add_bad(where(path, lineno), f"bad date/time in {line[:40]!r}")
                else:
                    pending = (ts, m[7].strip(), m[8] or m[9] or "", [])
            elif pending is not None and not _RULE.match(line):
                if pending[3] or not blank:
                    pending[3].append(line)
            previous_blank = blank
            previous_rule = _RULE.match(line) is not None
        if pending is not None:
            stats.read += 1
            yield _message(*pending, chat)
