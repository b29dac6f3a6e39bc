"""WhatsApp "Export chat" text files.

Android: `12/31/23, 9:41 PM - Name: text` (or 24h `31/12/2023, 21:41 - Name: text`);
iOS: `[31/12/2023, 21:41:05] Name: text`, with U+200E marks before media notes and system
events. A line that doesn't start with a timestamp continues the previous message.
The day/month order is a property of the exporting phone's locale, so it is decided once per
file: any first field above 12 means day-first, any second field above 12 month-first;
otherwise a 2-digit year (US Android style) means month-first and a 4-digit year day-first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from persona_studio.ingest.base import Kind, Message
from persona_studio.ingest.common import ReadStats, wall_ts, where
from persona_studio.ingest.encoding import open_text

NAME = "whatsapp"

_MARKS = "\u200e\u200f\u202a\u202c\u2068\u2069\ufeff"
_LINE = re.compile(
    r"^[\u200e\u200f\ufeff]?(?P<br>\[)?(?P<a>\d{1,4})(?P<sep>[/.\-])(?P<b>\d{1,2})[/.\-](?P<c>\d{1,4}),?[ \u00a0]"
    r"(?P<h>\d{1,2})[:.](?P<mi>\d{2})(?:[:.](?P<s>\d{2}))?"
    r"(?:[ \u202f\u00a0]?(?P<ap>[AaPp])\.?[ \u202f\u00a0]?[Mm]\.?)?"
    r"(?(br)\][ \u00a0]|[ \u00a0][-\u2013][ \u00a0])(?P<body>.*)$"
)
_SPEAKER = re.compile(r"^([^:]{1,80}?): (.*)$", re.S)
# System events are written without a "Name:" prefix, but their text may hold ": " itself
# (`Tom changed the subject to "Trip: day 2"`). A new "speaker" that reads like an event is one.
_EVENT = re.compile(
    r" (?:changed|added|removed|left|joined|created|deleted|pinned|started|turned|updated|reset|"
    r"invited|set|was added|was removed)( |$)|[\"\u201c]"
)
_EDITED = re.compile(r"\s*\u200e?<This message was edited>$")
_RECALL = {"This message was deleted", "This message was deleted.", "You deleted this message",
           "You deleted this message."}
_OMITTED: dict[str, Kind] = {
    "<Media omitted>": "file",
    "image omitted": "image",
    "video omitted": "video",
    "audio omitted": "voice",
    "sticker omitted": "sticker",
    "GIF omitted": "sticker",
    "document omitted": "file",
    "Contact card omitted": "other",
}
# Attachment file names WhatsApp writes: IMG-20231231-WA0001.jpg (Android), 00000012-PHOTO-….jpg (iOS).
_ATTACHED = re.compile(r"^(?:<attached: (?P<ios>[^>]+)>|(?P<android>\S+\.\w+) \(file attached\))")
_FILE_KINDS: tuple[tuple[str, Kind], ...] = (
    ("PHOTO", "image"), ("IMG", "image"), ("VIDEO", "video"), ("VID", "video"), ("AUDIO", "voice"),
    ("PTT", "voice"), ("AUD", "voice"), ("STICKER", "sticker"), ("STK", "sticker"),
)


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


def _classify(text: str) -> tuple[Kind, str]:
    marked = text.startswith("\u200e")
    body = text.lstrip(_MARKS)
    first = body.split("\n", 1)[0].strip()
    if first in _OMITTED:
        return _OMITTED[first], body
    if first in _RECALL:
        return "recall", body
    m = _ATTACHED.match(first)
    if m:
        name = (m["ios"] or m["android"] or "").upper()
        for token, kind in _FILE_KINDS:
            if token in name:
                return kind, body
        return "file", body
    if marked:
        return "system", body
    return "text", text


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
        hour = int(m["h"])
        if m["ap"]:
            if not 1 <= hour <= 12:
                raise ValueError("bad 12-hour time")
            hour = hour % 12 + (12 if m["ap"] in "Pp" else 0)
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
            self.seen.add(speaker)
        text = m[2]
        meta: dict[str, object] = {}
        edited = _EDITED.search(text)
        if edited:
            text = text[: edited.start()]
            meta["edited"] = True
        kind, text = _classify(text)
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
