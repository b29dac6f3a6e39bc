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
the next record. An export of several chats repeats the `消息对象:` block for each. English
clients write 12-hour times (`2019-09-23 8:43:38 PM Nick(12345)`), Chinese ones may write
`下午8:43:38`; files cut out of an export lack the header block.

Text copied from the chat window has the name first: `Nick 2019/9/23 20:43:38` (or only the
time, for today's messages), then the text; the date of a time-only line is the last date seen.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from persona_studio.ingest.base import Kind, Message
from persona_studio.ingest.common import ReadStats, wall_ts, where
from persona_studio.ingest.encoding import open_text

NAME = "qq"

_AP = r"(?:[AaPp]\.?\s?[Mm]\.?)"
_RECORD = re.compile(
    r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2}) (上午|下午)?(\d{1,2}):(\d{2}):(\d{2})(?:\s?(" + _AP + r"))? "
    r"(.*?)(?:\((\d{4,12})\)|<([^<>\s]+@[^<>\s]+)>)?\s*$"
)
# Copied from the chat window: "Nick 2019/9/23 20:43:38", "Nick 20:43:38", "Nick 下午8:43:38".
_COPIED = re.compile(
    r"^(?P<nick>\S.{0,39}?) (?:(?P<y>\d{4})[-/](?P<mo>\d{1,2})[-/](?P<d>\d{1,2}) )?(?P<zh>上午|下午)?"
    r"(?P<h>\d{1,2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\s?(?P<ap>" + _AP + r"))?\s*$"
)


def _hour(h: int, ap: str | None) -> int:
    """24-hour hour of a 12-hour clock reading (ap: AM/PM/上午/下午, or None for a 24-hour one)."""
    if not ap:
        return h
    if not 0 <= h <= 12:
        raise ValueError("bad 12-hour time")
    return h % 12 + (12 if ap in ("下午",) or ap[0] in "Pp" else 0)
_TARGET = re.compile(r"^消息对象[:：]\s*(.*?)\s*$")
_RULE = re.compile(r"^={8,}\s*$")
_MEDIA: dict[str, Kind] = {
    "[图片]": "image", "[表情]": "sticker", "[语音]": "voice", "[视频]": "video", "[文件]": "file",
    "[闪照]": "image", "[动画表情]": "sticker",
    # English clients
    "[Image]": "image", "[Photo]": "image", "[Flash image]": "image", "[Sticker]": "sticker", "[Emoji]": "sticker",
    "[Voice]": "voice", "[Video]": "video", "[File]": "file",
}
_SYSTEM_IDS = {"10000", "1000000"}


def sniff(head: str) -> bool:
    lines = [ln.strip() for ln in head.splitlines()[:60]]
    if any(ln.startswith("消息记录") for ln in lines[:3]) and any(
        ln.startswith(("消息分组", "消息对象")) for ln in lines
    ):
        return True
    # A header-less file: its first non-empty line must be a record carrying an id, or a line
    # copied from the chat window with a full date (and the next line not another such line).
    first = next((ln for ln in lines if ln), "")
    m = _RECORD.match(first)
    if m is not None and bool(m[10] or m[11]):
        return True
    c = _COPIED.match(first)
    return c is not None and c["y"] is not None


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


def _copied(head: str) -> bool:
    first = next((ln.strip() for ln in head.splitlines() if ln.strip()), "")
    m = _RECORD.match(first)
    return not first.startswith("消息记录") and not (m and (m[10] or m[11])) and bool(_COPIED.match(first))


def read(path: Path, encoding: str, stats: ReadStats) -> Iterator[Message]:
    from persona_studio.ingest.encoding import sniff as sniff_text

    if _copied(sniff_text(path)[1]):
        yield from _read_copied(path, encoding, stats)
        return
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
            if m is not None and not (m[10] or m[11]) and not previous_blank:
                m = None
            if target or m or _RULE.match(line):
                if pending is not None:
                    stats.read += 1
                    yield _message(*pending, chat)
                    pending = None
            if target:
                chat = target[1]
            elif m:
                y, mo, d, h, mi, s = (int(m[i]) for i in (1, 2, 3, 5, 6, 7))
                try:
                    ts = wall_ts(y, mo, d, _hour(h, m[4] or m[8]), mi, s)
                except ValueError:
                    stats.add_bad(where(path, lineno), f"bad date/time in {line[:40]!r}")
                else:
                    pending = (ts, m[9].strip(), m[10] or m[11] or "", [])
            elif pending is not None and not _RULE.match(line):
                if pending[3] or not blank:
                    pending[3].append(line)
            previous_blank = blank
            previous_rule = _RULE.match(line) is not None
        if pending is not None:
            stats.read += 1
            yield _message(*pending, chat)


def _read_copied(path: Path, encoding: str, stats: ReadStats) -> Iterator[Message]:
    """Text copied out of the chat window (see the module doc)."""
    day: tuple[int, int, int] | None = None
    pending: tuple[float, str, list[str]] | None = None
    with open_text(path, encoding) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n").lstrip("\ufeff")
            m = _COPIED.match(line)
            if m is not None and (m["y"] or day is not None):
                if pending is not None:
                    stats.read += 1
                    yield _message(pending[0], pending[1], "", pending[2], "")
                    pending = None
                if m["y"]:
                    day = (int(m["y"]), int(m["mo"]), int(m["d"]))
                assert day is not None
                try:
                    ts = wall_ts(*day, _hour(int(m["h"]), m["zh"] or m["ap"]), int(m["mi"]), int(m["s"]))
                except ValueError:
                    stats.add_bad(where(path, lineno), f"bad date/time in {line[:40]!r}")
                    continue
                pending = (ts, m["nick"].strip(), [])
            elif pending is not None:
                if pending[2] or line.strip():
                    pending[2].append(line)
            elif line.strip():
                stats.add_bad(where(path, lineno), "text before the first dated line")
        if pending is not None:
            stats.read += 1
            yield _message(pending[0], pending[1], "", pending[2], "")
