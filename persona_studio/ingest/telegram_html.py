"""Telegram Desktop's HTML export (`messages.html`, the export dialog's default format).

A chat is split into pages of 1000 messages: messages.html, messages2.html, … Naming
messages.html reads the pages after it too (they are one chat); naming a later page while
messages.html sits beside it is refused, so a shell glob cannot import a page twice.

Each message is a `<div class="message default clearfix[ joined]" id="messageN">` holding
`pull_right date details` (its title: `05.01.2023 12:00:01 UTC+03:00`, older exports without
the zone), `from_name` (absent on a "joined" message: same sender as the one before), `text`
(`<br>` for newlines), media under `media_wrap`, `reply_to details`, and for a forward a
`forwarded body` with the original sender's `from_name` and the text. `message service` divs
are notices; those with negative ids are the day separators and carry nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from persona_studio.ingest.base import ImportError_, Kind, Message
from persona_studio.ingest.common import ReadStats, wall_ts, where
from persona_studio.ingest.encoding import open_text

_PAGE = re.compile(r"messages(\d*)\.html", re.IGNORECASE)
_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?: UTC([+-])(\d{2}):(\d{2}))?")
_VOID = {"br", "img", "meta", "link", "hr", "input", "source", "wbr"}
_MAX_DEPTH = 200  # deeper nesting is not an export of ours: its tags are not tracked
# media_wrap's inner classes -> kind (checked in this order)
_MEDIA: tuple[tuple[str, Kind], ...] = (
    ("sticker", "sticker"), ("animated_wrap", "sticker"), ("media_voice_message", "voice"),
    ("video_file_wrap", "video"), ("media_video", "video"), ("photo_wrap", "image"), ("media_photo", "image"),
    ("media_audio_file", "file"), ("media_file", "file"),
    ("media_location", "other"), ("media_live_location", "other"), ("media_contact", "other"),
    ("media_poll", "other"), ("media_game", "other"), ("media_invoice", "other"), ("media_venue", "other"),
)


def sniff(head: str) -> bool:
    low = head.lower()
    return "<html" in low and ('class="page_body chat_page"' in head or 'class="message default clearfix' in head
                               or ("<title>exported data</title>" in low and 'class="page_header"' in head))


def pages(path: Path) -> list[Path]:
    """The files one named page stands for (see the module docstring)."""
    m = _PAGE.fullmatch(path.name)
    if m is None:
        return [path]
    if m.group(1):
        first = path.with_name("messages.html")
        if first.is_file() and m.group(1) != "1":
            raise ImportError_(f"{path}: a later page of {first}, which is read with it: import {first.name} alone")
        return [path]
    later = []
    for p in path.parent.iterdir():
        n = _PAGE.fullmatch(p.name)
        if n and n.group(1) and n.group(1) != "1" and p.is_file():
            later.append((int(n.group(1)), p))
    return [path] + [p for _, p in sorted(later)]


def parse_date(title: str) -> float:
    m = _DATE.fullmatch(title.strip())
    if m is None:
        raise ValueError(f"date {title.strip()[:40]!r} is not DD.MM.YYYY HH:MM:SS")
    d, mo, y, h, mi, s = (int(x) for x in m.groups()[:6])
    if m.group(7) is None:
        return wall_ts(y, mo, d, h, mi, s)  # no zone: wall time, as other zone-less sources
    offset = timedelta(hours=int(m.group(8)), minutes=int(m.group(9))) * (1 if m.group(7) == "+" else -1)
    return datetime(y, mo, d, h, mi, s, tzinfo=timezone(offset)).timestamp()


_MONTHS = {m: i for i, m in enumerate(("january", "february", "march", "april", "may", "june", "july", "august",
                                        "september", "october", "november", "december"), 1)}


def _day(text: str) -> float | None:
    """Midnight of a day separator ("5 January 2023", as the export writes them), or None."""
    parts = text.split()
    if len(parts) == 3 and parts[0].isdigit() and parts[1].lower() in _MONTHS and parts[2].isdigit():
        return wall_ts(int(parts[2]), _MONTHS[parts[1].lower()], int(parts[0]))
    return None


class _Page(HTMLParser):
    """Collects the messages of one page as plain dicts (see `_message`)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[set[str]] = []  # the classes of each open element
        self.overflow = 0
        self.chat = ""
        self.msg: dict[str, Any] | None = None
        self.msg_depth = 0
        self.capture: tuple[str, int] | None = None  # (field, depth) while reading a field's text
        self.chat_parts: list[str] = []
        self.done: list[dict[str, Any]] = []

    def _inside(self, cls: str) -> bool:
        return any(cls in c for c in self.stack[self.msg_depth:])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "br" and self.capture is not None and self.msg is not None \
                    and self.capture[0] in self.msg["parts"]:
                self.msg["parts"][self.capture[0]].append("\n")
            return
        if len(self.stack) >= _MAX_DEPTH:
            self.overflow += 1
            return
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        self.stack.append(classes)
        depth = len(self.stack)
        if self.msg is None:
            if "message" in classes and (a.get("id") or "").startswith("message"):
                self.msg = {"id": a.get("id", "")[len("message"):], "service": "service" in classes,
                            "joined": "joined" in classes, "date": None, "media": None, "reply_to": None,
                            "parts": {"from": [], "text": [], "fwd_from": [], "service": []}}
                self.msg_depth = depth - 1
            elif {"text", "bold"} <= classes and self._header():
                self.capture = ("chat", depth)
            return
        if self.capture is not None:
            if "details" in classes and self.capture[0] in ("from", "fwd_from"):
                self.capture = (self.capture[0] + "-details", depth)  # "via @bot", a forward's date
            return
        fwd = self._inside("forwarded")
        if "date" in classes and "details" in classes and a.get("title") and not fwd and self.msg["date"] is None:
            self.msg["date"] = a["title"]
        elif "from_name" in classes:
            self.capture = ("fwd_from" if fwd else "from", depth)
        elif "text" in classes and not self._inside("reply_to"):
            self.capture = ("text", depth)
        elif self.msg["service"] and "body" in classes and "details" in classes:
            self.capture = ("service", depth)
        elif "reply_to" in classes:
            self.msg["reply_to"] = True
        elif tag == "a" and self._inside("reply_to") and (a.get("href") or "").find("go_to_message") >= 0:
            self.msg["reply_to"] = (a.get("href") or "").rsplit("go_to_message", 1)[1]
        elif self._inside("media_wrap") and self.msg["media"] is None:
            for key, kind in _MEDIA:
                if any(key in c for c in classes):
                    self.msg["media"] = kind
                    break

    def _header(self) -> bool:
        return any("page_header" in c for c in self.stack)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if self.overflow:
            self.overflow -= 1
            return
        if not self.stack:
            return
        depth = len(self.stack)
        self.stack.pop()
        if self.capture is not None and depth == self.capture[1]:
            name = self.capture[0]
            if name == "chat":
                self.chat = " ".join("".join(self.chat_parts).split())
                self.capture = None
            elif name.endswith("-details"):
                self.capture = (name[: -len("-details")], self._field_depth(name[: -len("-details")]))
            else:
                self.capture = None
        if self.msg is not None and depth == self.msg_depth + 1:
            self.done.append(self.msg)
            self.msg = None

    def _field_depth(self, name: str) -> int:
        # the field's own element is the innermost open one whose class names it
        want = {"from": "from_name", "fwd_from": "from_name"}[name]
        for i in range(len(self.stack) - 1, -1, -1):
            if want in self.stack[i]:
                return i + 1
        return len(self.stack)

    def handle_data(self, data: str) -> None:
        if self.capture is None:
            return
        name = self.capture[0]
        if name == "chat":
            self.chat_parts.append(data)
        elif self.msg is not None and name in self.msg["parts"]:
            self.msg["parts"][name].append(data)


def _clean(parts: list[str]) -> str:
    """The text of a field: the export's own line breaks and indentation are layout, `<br>`
    ("\n" in parts) are the message's line breaks."""
    text = "".join(p if p == "\n" else re.sub(r"\s*\n\s*", " ", p) for p in parts)
    return "\n".join(line.strip() for line in text.split("\n")).strip("\n").strip()


def _message(raw: dict[str, Any], chat: str, last: Message | None, day: float | None) -> Message:
    """ValueError for a message that cannot be used. A notice has no time of its own: it
    takes the one of the message before it on the page, else the day separator's midnight."""
    parts = raw["parts"]
    meta: dict[str, Any] = {"id": raw["id"]}
    if raw["service"]:
        ts = parse_date(raw["date"]) if raw["date"] else (last.ts if last else day)
        return Message(ts=ts, speaker="", text=_clean(parts["service"]), kind="system", chat=chat, meta=meta)
    if raw["date"] is None:
        raise ValueError("no date")
    ts = parse_date(raw["date"])
    speaker = _clean(parts["from"]) or (last.speaker if raw["joined"] and last and last.speaker else "")
    if not speaker:
        raise ValueError("no sender (a continued message group whose first message is not in this file)")
    if parts["fwd_from"]:
        meta["forwarded_from"] = _clean(parts["fwd_from"])
    if isinstance(raw["reply_to"], str) and raw["reply_to"]:
        meta["reply_to_message_id"] = raw["reply_to"]
    kind: Kind = raw["media"] or ("forward" if parts["fwd_from"] else "text")
    return Message(ts=ts, speaker=speaker, text=_clean(parts["text"]), kind=kind, speaker_id=speaker, chat=chat,
                   meta=meta)


def read(path: Path, encoding: str, stats: ReadStats) -> Iterator[Message]:
    return _read(pages(path), encoding, stats)  # pages() refuses at call time, like every check


def _read(files: list[Path], encoding: str, stats: ReadStats) -> Iterator[Message]:
    for page in files:
        parser, last, day = _Page(), None, None
        with open_text(page, encoding) as f:
            while True:
                chunk = f.read(1 << 16)
                if chunk:
                    parser.feed(chunk)
                else:
                    parser.close()
                done, parser.done = parser.done, []
                for raw in done:
                    if raw["id"].startswith("-"):  # a day separator: "5 January 2023"
                        day = _day(_clean(raw["parts"]["service"])) or day
                        continue
                    try:
                        msg = _message(raw, parser.chat, last, day)
                    except ValueError as exc:
                        stats.add_bad(where(page, f"message {raw['id']}"), str(exc))
                        continue
                    if msg.kind != "system":
                        last = msg
                    stats.read += 1
                    yield msg
                if not chunk:
                    break
