"""Telegram Desktop's JSON export (`result.json`); its HTML export is telegram_html.py, read
under the same format name (ingest/__init__.py `_SHAPES`).

Two JSON shapes: one chat `{name, type, id, messages: [...]}`, or the full account export
`{about, chats: {list: [{name, …, messages}]}, left_chats: {list: [...]}}`. Both are walked
in one streaming pass; a chat's `name` precedes its `messages` in every export we know.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persona_studio.ingest import jsonstream
from persona_studio.ingest.base import Kind, Message
from persona_studio.ingest.common import ReadStats, json_messages, parse_iso

NAME = "telegram"

_MESSAGE_ARRAYS = ("messages.item", "chats.list.item.messages.item", "left_chats.list.item.messages.item")
_CHAT_NAMES = {"name": "", "chats.list.item.name": "chats", "left_chats.list.item.name": "left_chats"}
_KEY = re.compile(r'"([A-Za-z_]+)"\s*:')

_MEDIA_KINDS: dict[str, Kind] = {
    "sticker": "sticker",
    "animation": "sticker",  # GIFs: used like stickers in chat
    "voice_message": "voice",
    "audio_file": "file",
    "video_message": "video",
    "video_file": "video",
}


def sniff(head: str) -> bool:
    if not head.lstrip().startswith("{"):
        return False
    keys = set(_KEY.findall(head))
    if keys & {"personal_information", "frequent_contacts"} or {"chats", "list"} <= keys:
        return True  # the full account export
    return "messages" in keys and bool(keys & {"from_id", "date_unixtime", "text_entities", "actor_id"})


def flatten_text(text: Any) -> str:
    """`text` is a string, or a list of strings and entity objects `{type, text}`."""
    if isinstance(text, str):
        return text
    if isinstance(text, list):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in text if isinstance(p, str | dict))
    return ""


def _kind(msg: dict[str, Any]) -> Kind:
    if msg.get("type") == "service":
        return "system"
    media = msg.get("media_type")
    if isinstance(media, str):
        return _MEDIA_KINDS.get(media, "file")
    if "photo" in msg:
        return "image"
    if "file" in msg:
        return "file"
    if any(k in msg for k in ("poll", "location_information", "contact_information", "game_title", "invoice")):
        return "other"
    return "text"


def _ts(msg: dict[str, Any]) -> float:
    unix = msg.get("date_unixtime")
    if unix not in (None, ""):
        return float(unix)
    date = msg.get("date")
    if not isinstance(date, str):
        raise ValueError("no date")
    return parse_iso(date)


def to_message(msg: dict[str, Any], chat: str) -> Message:
    """Raises ValueError/TypeError for a record that isn't a usable message."""
    ts = _ts(msg)
    kind = _kind(msg)
    text = flatten_text(msg.get("text", ""))
    if kind == "system":
        speaker = str(msg.get("actor") or "")
        speaker_id = str(msg.get("actor_id") or speaker)
        action = str(msg.get("action") or "")
        text = f"{action}: {text}" if action and text else (action or text)
    else:
        speaker_id = str(msg.get("from_id") or "")
        # A deleted account exports `from: null`; its id still tells people apart.
        speaker = str(msg.get("from") or speaker_id or "Deleted Account")
    if kind == "text" and msg.get("forwarded_from") not in (None, ""):
        kind = "forward"
    meta: dict[str, Any] = {"id": msg.get("id")}
    for key in ("reply_to_message_id", "forwarded_from", "edited_unixtime", "sticker_emoji"):
        if msg.get(key) not in (None, ""):
            meta[key] = msg[key]
    return Message(ts=ts, speaker=speaker, text=text, kind=kind, speaker_id=speaker_id, chat=chat, meta=meta)


def _records(path: Path, encoding: str) -> Iterator[tuple[Any, str]]:
    """(message record, chat name). A one-chat export goes through ijson's C `items`
    (several times faster); the full export needs `walk` to see every chat's name."""
    stops = {"messages", "chats", "left_chats"}
    context, first = jsonstream.head_context(path, encoding, stops, {"name"}.__contains__)
    if first == "messages":
        chat = str(context.get("name") or "")
        for record in jsonstream.items(path, encoding, "messages.item"):
            yield record, chat
        return
    want = set(_MESSAGE_ARRAYS).__contains__
    keep = _CHAT_NAMES.__contains__
    for prefix, record, context in jsonstream.walk(path, encoding, want, keep):
        yield record, str(context.get(prefix[: -len("messages.item")] + "name") or "")


def read(path: Path, encoding: str, stats: ReadStats) -> Iterator[Message]:
    return json_messages(path, _records(path, encoding), to_message, stats, (ValueError, TypeError, OverflowError))
