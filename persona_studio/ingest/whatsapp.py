"""WhatsApp "Export chat" text files.

Android: `12/31/23, 9:41 PM - Name: text` (or 24h `31/12/2023, 21:41 - Name: text`);
iOS: `[31/12/2023, 21:41:05] Name: text`, with U+200E marks before media notes and system
events; old iOS `7/1/16, 4:56:55 PM: Name: text`. A line that doesn't start with a timestamp
continues the previous message. A ZIP export is read in place (ingest/encoding.py).
The day/month order is a property of the exporting phone's locale, so it is decided once per
file: any first field above 12 means day-first, any second field above 12 month-first;
otherwise a 2-digit year (US Android style) means month-first and a 4-digit year day-first.
Clocks: 12-hour (`PM`, `p. m.`, 下午, 午後, م, with any kind of space; midnight may be `00:04 AM`),
RTL exports (U+200F around date parts, Arabic comma, Arabic-Indic digits), Thai Buddhist-era
years. What the phone writes instead of speech, in 12 languages: whatsapp_locale.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persona_studio.ingest import whatsapp_locale as L
from persona_studio.ingest.base import Kind, Message
from persona_studio.ingest.common import ReadStats, wall_ts, where
from persona_studio.ingest.encoding import open_text

NAME = "whatsapp"

# Direction and formatting marks: RTL exports put U+200F around every date part, iOS puts
# U+200E before notices, U+202A/U+202C wrap phone numbers.
_MARKS = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
_M = "[\u200e\u200f\u202a-\u202e\u2066-\u2069]*"
_SP = "[ \u00a0\u202f]"
# AM/PM: "PM", "p. m.", "p.m."; 上午/下午 (zh), 午前/午後 (ja), 오전/오후 (ko), ص/م (ar). `\d`
# matches Arabic-Indic digits too, and int() reads them.
_AP = r"(?:[AaPp]\.?" + _SP + r"?[Mm]\.?|上午|下午|午前|午後|오전|오후|ص|م)"
_LINE = re.compile(
    rf"^\ufeff?{_M}(?P<br>\[)?{_M}(?P<a>\d{{1,4}}){_M}(?P<sep>[/.\-]){_M}(?P<b>\d{{1,2}}){_M}[/.\-]{_M}"
    rf"(?P<c>\d{{1,4}}){_M}\.?[,،]?{_M}{_SP}+{_M}(?:(?P<ap1>{_AP}){_SP}?)?"
    rf"(?P<h>\d{{1,2}})[:.](?P<mi>\d{{2}})(?:[:.](?P<s>\d{{2}}))?(?:{_SP}?(?P<ap>{_AP}))?{_M}"
    # after the clock: "] " (iOS), " - " (Android) or ": " (old iOS without brackets)
    rf"(?(br)\]{_SP}|(?:{_SP}[-\u2013]{_SP}|:{_SP}))(?P<body>.*)$"
)
_SPEAKER = re.compile(r"^([^:]{1,80}?): (.*)$", re.S)
# System events are written without a "Name:" prefix, but their text may hold ": " itself
# (`Tom changed the subject to "Trip: day 2"`). A new "speaker" that reads like an event is one.
_EVENT = re.compile(
    r" (?:changed|added|removed|left|joined|created|deleted|pinned|started|turned|updated|reset|"
    r"invited|set|was added|was removed)( |$)|[\"\u201c]"
)
_PM = {"下午", "午後", "오후", "م"}


def sniff(head: str) -> bool:
    for line in head.splitlines()[:5]:
        if line.strip(_MARKS + " \t"):
            return _LINE.match(line) is not None
    return False


def _day_first(path: Path, encoding: str) -> bool:
    """Scan until a date settles the order (streaming; usually the first few lines do)."""
    default: bool | None = None
    with open_text(path, encoding) as f:
        for line in f:
            m = _LINE.match(line)
            if not m or len(m["a"]) == 4:
                continue
            if m["sep"] == ".":
                return True  # dotted dates (31.12.23) are always day-first
            if int(m["a"]) > 12:
                return True
            if int(m["b"]) > 12:
                return False
            if default is None:
                default = len(m["c"]) == 4
    return bool(default)


def _placeholder(first: str, raw_first: str) -> Kind | None:
    """The media kind when the first line is a media placeholder, else None."""
    kind = L.OMITTED.get(first)
    if kind is not None:
        return kind
    if len(first) > 200:  # placeholders are short; speech needs no more checks here
        return None
    if first.endswith(L.DOCUMENT_ENDINGS):
        return "file"
    m = (L.ATTACHED_IOS.match(raw_first) if raw_first[:1] == "<" else
         L.ATTACHED_ANDROID.match(raw_first) if raw_first[-1:] == ")" else None)
    if m:
        name = m["name"].upper()
        return next((k for token, k in L.FILE_KINDS if token in name), "file")
    if "://" in raw_first and L.LOCATION.match(raw_first):
        return "other"
    return None


def _classify(text: str) -> tuple[Kind, str, dict[str, Any]]:
    """(kind, text, meta) of a message body. Leading invisible marks are stripped and never
    decide the kind; the words do. meta["notice"]: a chat-wide notice that iOS writes under the
    group's name (encryption notice, group events), so that name is no speaker."""
    marked = text[:1] in _MARKS
    body = text.lstrip(_MARKS)
    raw_first = body.split("\n", 1)[0].strip(_MARKS + " \t")
    first = raw_first.rstrip(".。").casefold()
    kind = _placeholder(first, raw_first)
    if kind is not None:
        caption = body.split("\n", 1)[1].strip(_MARKS + " \n") if "\n" in body else ""
        if caption:  # a photo's caption is speech: keep it, note what it captioned
            return "text", caption, {"media": kind}
        return kind, body, {}
    if first in L.RECALL:
        return "recall", body, {}
    if len(first) < 80 and (first.startswith(L.MISSED_CALL) or first.startswith(L.OTHER_SYSTEM)):
        return "system", body, {}
    if len(body) < 400 and ("hatsApp" in body or "واتساب" in body) and L.E2E.search(body):
        return "system", body, {"notice": True}
    if marked and L.EVENT.search(body) and "\n" not in body and len(body) < 200:
        return "system", body, {"notice": True}  # an iOS group event under the group's name
    return "text", body, {}


class _Parser:
    def __init__(self, path: Path, day_first: bool) -> None:
        self.path = path
        self.day_first = day_first
        self.seen: set[str] = set()

    def ts(self, m: re.Match[str]) -> float:
        a, b, c = int(m["a"]), int(m["b"]), int(m["c"])
        if len(m["a"]) == 4:
            year, month, day = a, b, c
        else:
            year = c + 2000 if c < 100 else c
            day, month = (a, b) if self.day_first else (b, a)
        if year >= 2400:  # Thai exports count years in the Buddhist era (2566 = 2023)
            year -= 543
        hour = int(m["h"])
        ap = m["ap"] or m["ap1"]
        if ap:
            # 12-hour clocks; some exports write midnight as "00:04 AM"
            if not 0 <= hour <= 12:
                raise ValueError("bad 12-hour time")
            hour = hour % 12 + (12 if ap[0] in "Pp" or ap in _PM else 0)
        return wall_ts(year, month, day, hour, int(m["mi"]), int(m["s"] or 0))

    def message(self, ts: float, body: str, lines: list[str]) -> Message:
        text = "\n".join([body, *lines]).rstrip("\n") if lines else body
        m = _SPEAKER.match(text)
        if m is None:
            return Message(ts=ts, speaker="", text=text.strip(_MARKS), kind="system")
        speaker = m[1].strip(_MARKS + " ")
        if speaker not in self.seen:
            if _EVENT.search(speaker):
                return Message(ts=ts, speaker="", text=text.strip(_MARKS), kind="system")
        text = m[2]
        edited = L.EDITED.search(text) if text.endswith(">") else None
        if edited:
            text = text[: edited.start()]
        kind, text, meta = _classify(text)
        if meta.pop("notice", False):
            return Message(ts=ts, speaker="", text=text, kind="system")
        self.seen.add(speaker)
        if edited:
            meta["edited"] = True
        return Message(ts=ts, speaker=speaker, text=text, kind=kind, speaker_id=speaker, meta=meta)


def read(path: Path, encoding: str, stats: ReadStats) -> Iterator[Message]:
    parser = _Parser(path, _day_first(path, encoding))
    pending: tuple[float, str, list[str]] | None = None
    with open_text(path, encoding) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            m = _LINE.match(line)
            if m is None:
                if pending is not None:
                    pending[2].append(line)
                elif line.strip(_MARKS + " \t"):
                    stats.add_bad(where(path, lineno), "text before the first dated line")
                continue
            try:
                ts = parser.ts(m)
            except ValueError:
                # A wrong date here is more likely message text that merely looks like one.
                if pending is not None:
                    pending[2].append(line)
                else:
                    stats.add_bad(where(path, lineno), f"bad date/time in {line[:40]!r}")
                continue
            if pending is not None:
                stats.read += 1
                yield parser.message(*pending)
            pending = (ts, m["body"], [])
        if pending is not None:
            stats.read += 1
            yield parser.message(*pending)
