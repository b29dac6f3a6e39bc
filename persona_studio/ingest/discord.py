"""DiscordChatExporter JSON: `{guild, channel, dateRange, messages: [...], messageCount}`.

`guild` and `channel` come before `messages`, so one streaming pass knows the chat name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persona_studio.ingest import jsonstream
from persona_studio.ingest.base import Kind, Message
from persona_studio.ingest.common import ReadStats, json_messages, parse_iso

NAME = "discord"

_KEY = re.compile(r'"([A-Za-z_]+)"\s*:')
# Message types that are people talking; the rest (joins, pins, calls, boosts…) are system.
_TALK = {"Default", "Reply", "0", "19"}
_EXT_KINDS: dict[str, Kind] = {}
for _ext in ("png", "jpg", "jpeg", "gif", "webp", "bmp", "heic"):
    _EXT_KINDS[_ext] = "image"
for _ext in ("mp4", "mov", "webm", "mkv", "avi"):
    _EXT_KINDS[_ext] = "video"
for _ext in ("ogg", "mp3", "m4a", "wav", "opus"):
    _EXT_KINDS[_ext] = "voice"


def sniff(head: str) -> bool:
    if not head.lstrip().startswith("{"):
        return False
    keys = set(_KEY.findall(head))
    return {"guild", "channel"} <= keys or ("messages" in keys and {"author", "timestamp"} <= keys)


def _attachment_kind(attachments: list[Any]) -> Kind:
    for att in attachments:
        if isinstance(att, dict):
            name = str(att.get("fileName") or att.get("url") or "")
            return _EXT_KINDS.get(name.rsplit(".", 1)[-1].lower(), "file")
    return "file"


def to_message(msg: dict[str, Any], chat: str) -> Message:
    """Raises ValueError/TypeError/KeyError for a record that isn't a usable message."""
    ts = parse_iso(msg["timestamp"])
    author = msg.get("author") or {}
    if not isinstance(author, dict):
        raise TypeError("author is not an object")
    speaker_id = str(author.get("id") or "")
    speaker = str(author.get("nickname") or author.get("name") or speaker_id)
    text = str(msg.get("content") or "")
    kind: Kind = "text"
    if str(msg.get("type", "Default")) not in _TALK:
        kind = "system"
    elif msg.get("stickers") and not text:
        kind = "sticker"
    elif msg.get("attachments") and not text:
        kind = _attachment_kind(msg["attachments"])
    meta: dict[str, Any] = {"id": msg.get("id")}
    if author.get("isBot"):
        meta["is_bot"] = True
    ref = msg.get("reference")
    if isinstance(ref, dict) and ref.get("messageId"):
        meta["reply_to"] = ref["messageId"]
    if msg.get("attachments") and text:
        meta["attachments"] = len(msg["attachments"])
    return Message(ts=ts, speaker=speaker, text=text, kind=kind, speaker_id=speaker_id, chat=chat, meta=meta)


def read(path: Path, encoding: str, stats: ReadStats) -> Iterator[Message]:
    keep = {"guild.name", "channel.name", "channel.category"}.__contains__
    context, _ = jsonstream.head_context(path, encoding, {"messages"}, keep)
    parts = [context.get("guild.name"), context.get("channel.category"), context.get("channel.name")]
    chat = " / ".join(str(p) for p in parts if p)
    records = ((value, chat) for value in jsonstream.items(path, encoding, "messages.item"))
    # Exports of overlapping date ranges joined together, or re-fetched pages, repeat messages:
    # a message id is imported once (ids are snowflakes, unique per message across Discord).
    seen: set[str] = set()
    for message in json_messages(path, records, to_message, stats, (ValueError, TypeError, KeyError)):
        mid = message.meta.get("id")
        if mid is not None:
            if str(mid) in seen:
                stats.read -= 1
                stats.skip("duplicate_id")
                continue
            seen.add(str(mid))
        yield message
