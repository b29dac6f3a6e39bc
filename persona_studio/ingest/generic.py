"""Training-dataset formats where roles are already known: OpenAI messages, ShareGPT,
Alpaca, ChatGLM and SillyTavern chats.

Each record (a JSONL line, an element of a top-level JSON array, or a lone JSON object)
is one conversation; its messages get `conv` = the record's index so the cleaning step
keeps the source's sample boundaries. System prompts keep kind "text" with role "system".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from persona_studio import jsondepth
from persona_studio.ingest import jsonstream
from persona_studio.ingest.base import ImportError_, Message
from persona_studio.ingest.common import ReadStats, parse_iso, wall_ts, where
from persona_studio.ingest.encoding import open_text

NAMES = ("openai", "sharegpt", "alpaca", "chatglm", "sillytavern")

_KEY = re.compile(r'"([A-Za-z_]+)"\s*:')
_ROLES = {
    "user": "user", "human": "user", "system": "system", "developer": "system",
    "assistant": "assistant", "gpt": "assistant", "model": "assistant", "bot": "assistant",
    "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
}


class BadRecord(ValueError):
    """One record is unusable; it is counted in stats.bad, the file goes on."""


class SkipRecord(Exception):
    """A good record that is deliberately not imported; counted in stats.skipped_kinds by reason."""


# Tool use: a turn in one of these roles, or an assistant turn that calls a tool. The answer
# after it cites tool output the persona will never see in training or chat, so the record
# is skipped whole (and counted) instead of teaching answers out of thin air.
_TOOL_ROLES = {"tool", "function", "ipython", "observation", "function_call", "tool_call", "tool_response"}
_TOOL_KEYS = ("tool_calls", "function_call", "tool_call_id")


def _keys(head: str) -> set[str]:
    return set(_KEY.findall(head))


def sniff_sillytavern(head: str) -> bool:
    keys = _keys(head)
    return {"user_name", "character_name"} <= keys or {"is_user", "mes"} <= keys


def sniff_openai(head: str) -> bool:
    keys = _keys(head)
    return "messages" in keys and {"role", "content"} <= keys and not keys & {"from_id", "guild"}


def sniff_chatglm(head: str) -> bool:
    keys = _keys(head)
    return (
        ("conversations" in keys and {"role", "content"} <= keys and not {"from", "value"} <= keys)
        or {"context", "target"} <= keys
        or {"prompt", "response"} <= keys
    )


def sniff_sharegpt(head: str) -> bool:
    keys = _keys(head)
    return ("conversations" in keys or "messages" in keys) and (
        {"from", "value"} <= keys or ("conversations" in keys and {"role", "content"} <= keys)
    )


def sniff_alpaca(head: str) -> bool:
    return {"instruction", "output"} <= _keys(head)


# Preference datasets (read by prefs/imports.py into preference pairs, not messages).
def sniff_dpo(head: str) -> bool:
    return {"chosen", "rejected"} <= _keys(head)


def sniff_kto(head: str) -> bool:
    keys = _keys(head)
    return bool(keys & {"label", "kto_tag"}) and bool(keys & {"completion", "messages", "conversations", "output"})


SNIFFERS: dict[str, Callable[[str], bool]] = {
    "sillytavern": sniff_sillytavern, "openai": sniff_openai, "chatglm": sniff_chatglm,
    "sharegpt": sniff_sharegpt, "alpaca": sniff_alpaca, "dpo": sniff_dpo, "kto": sniff_kto,
}


def _loads(path: Path, lineno: int, line: str) -> Any:
    """json.loads of one JSONL line, refusing (for the whole file) a line nested too deep:
    that is hostile input, and json.loads would die of a RecursionError on it."""
    try:
        return jsondepth.loads(line)
    except jsondepth.TooDeep as exc:
        raise ImportError_(f"{where(path, lineno)}: {exc} (refused)") from None


# A JSONL line (one conversation) longer than this is refused, not read: it would be held and
# parsed whole. Far above any real conversation; a dataset is a JSON array, streamed below.
LINE_LIMIT = 64 << 20


def _records(path: Path, encoding: str, stats: ReadStats) -> Iterator[tuple[str, Any]]:
    """(where, record) for a JSONL file, a top-level JSON array, or one JSON object.

    Only JSONL is read line by line. The kind is told from the first character and at most one
    bounded line: `json.dump` writes a whole dataset on one line, and reading that "first line"
    to try it as JSONL held the file in memory and parsed it twice (1.2 GB for a 50 MB array).
    """
    with open_text(path, encoding) as f:
        lineno, start = 1, ""
        while start in ("", *" \t\r\n\ufeff"):
            lineno += start == "\n"
            start = f.read(1)
            if start == "":
                break  # empty: the streaming parser says so
        first = start + (f.readline(LINE_LIMIT) if start == "{" else "")
        jsonl = False
        if first.endswith(("\n", "\r")) or (start == "{" and len(first) <= LINE_LIMIT):
            try:
                jsonl = isinstance(_loads(path, lineno, first), dict)
            except json.JSONDecodeError:
                pass  # a JSON object over several lines (or cut at the limit): one document
        if jsonl:
            line = first
            while True:
                if line.strip():
                    try:
                        yield where(path, lineno), _loads(path, lineno, line)
                    except json.JSONDecodeError as exc:
                        stats.add_bad(where(path, lineno), f"bad JSON ({exc.msg})")
                line = f.readline(LINE_LIMIT + 1)
                if not line:
                    return
                lineno += 1
                if len(line) > LINE_LIMIT:
                    while line and not line.endswith(("\n", "\r")):  # skip the rest, unread
                        line = f.readline(LINE_LIMIT)
                    stats.add_bad(where(path, lineno), f"line longer than {LINE_LIMIT:,} characters (skipped)")
                    line = "\n"
    prefix = "item" if start == "[" else ""
    for index, record in enumerate(jsonstream.items(path, encoding, prefix), 1):
        yield where(path, f"record {index}"), record


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: OpenAI {type: text, text}, or {type?, value}
        parts = [p.get("text", p.get("value")) for p in content
                 if isinstance(p, dict) and p.get("type", "text") == "text"]
        if all(isinstance(p, str) for p in parts) and parts:
            return "\n".join(parts)
    raise BadRecord("content is not text")


def _turn(role: Any, content: Any, conv: int, stats: ReadStats, name: Any = None) -> Message | None:
    norm = _ROLES.get(str(role).lower())
    if norm is None:
        stats.skip(f"role:{role}")
        return None
    text = _text(content)
    speaker = name if isinstance(name, str) and name else norm
    return Message(ts=None, speaker=speaker, text=text, speaker_id=speaker, role=norm, conv=conv)


def _turns(turns: Any, conv: int, stats: ReadStats, role_key: str, text_key: str) -> list[Message]:
    if not isinstance(turns, list) or not turns:
        raise BadRecord(f"no {role_key}/{text_key} turns")
    out: list[Message] = []
    for turn in turns:
        if not isinstance(turn, dict):
            raise BadRecord("a turn is not an object")
        role = turn.get(role_key, turn.get("role"))
        text = turn.get(text_key, turn.get("content"))
        if str(role).lower() in _TOOL_ROLES or any(turn.get(k) for k in _TOOL_KEYS):
            raise SkipRecord("tool_calls")
        if role is None or text is None:
            raise BadRecord(f"a turn lacks {role_key!r} or {text_key!r}")
        msg = _turn(role, text, conv, stats, turn.get("name"))
        if msg is not None:
            out.append(msg)
    return out


def _system(record: dict[str, Any], conv: int) -> list[Message]:
    system = record.get("system")
    if isinstance(system, str) and system.strip():
        return [Message(ts=None, speaker="system", text=system, speaker_id="system", role="system", conv=conv)]
    return []


def _history(record: dict[str, Any], conv: int) -> list[Message]:
    out: list[Message] = []
    history = record.get("history") or []
    if not isinstance(history, list):
        raise BadRecord("history is not a list")
    for pair in history:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise BadRecord("history entries must be [question, answer]")
        out.append(Message(ts=None, speaker="user", text=pair[0], speaker_id="user", role="user", conv=conv))
        out.append(Message(ts=None, speaker="assistant", text=pair[1], speaker_id="assistant", role="assistant", conv=conv))
    return out


def _pair(record: dict[str, Any], conv: int, q: str, a: str) -> list[Message]:
    out = _system(record, conv) + _history(record, conv)
    out.append(Message(ts=None, speaker="user", text=q, speaker_id="user", role="user", conv=conv))
    out.append(Message(ts=None, speaker="assistant", text=a, speaker_id="assistant", role="assistant", conv=conv))
    return out


def _openai(record: dict[str, Any], conv: int, stats: ReadStats) -> list[Message]:
    return _turns(record.get("messages"), conv, stats, "role", "content")


def _sharegpt(record: dict[str, Any], conv: int, stats: ReadStats) -> list[Message]:
    turns = record.get("conversations", record.get("messages"))
    return _system(record, conv) + _turns(turns, conv, stats, "from", "value")


def _alpaca(record: dict[str, Any], conv: int, stats: ReadStats) -> list[Message]:
    instruction, extra, output = record.get("instruction"), record.get("input") or "", record.get("output")
    if not isinstance(instruction, str) or not isinstance(output, str) or not isinstance(extra, str):
        raise BadRecord("needs string 'instruction' and 'output'")
    return _pair(record, conv, f"{instruction}\n{extra}" if extra else instruction, output)


def _chatglm(record: dict[str, Any], conv: int, stats: ReadStats) -> list[Message]:
    if "conversations" in record:
        return _turns(record["conversations"], conv, stats, "role", "content")
    for q, a in (("context", "target"), ("prompt", "response")):
        if isinstance(record.get(q), str) and isinstance(record.get(a), str):
            return _pair(record, conv, record[q], record[a])
    raise BadRecord("needs 'conversations', 'context'/'target' or 'prompt'/'response'")


_RECORD_READERS: dict[str, Callable[[dict[str, Any], int, ReadStats], list[Message]]] = {
    "openai": _openai, "sharegpt": _sharegpt, "alpaca": _alpaca, "chatglm": _chatglm,
}

_ST_AT = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2}) ?@(\d{1,2})h ?(\d{1,2})m ?(\d{1,2})s")


def _st_time(value: Any) -> float | None:
    """SillyTavern's send_date has changed shape over the years; unknown shapes → None."""
    if isinstance(value, int | float):
        return value / 1000 if value > 1e11 else float(value)
    if not isinstance(value, str) or not value:
        return None
    m = _ST_AT.match(value)
    if m:
        return wall_ts(*(int(x) for x in m.groups()))
    for fmt in ("%B %d, %Y %I:%M%p", "%B %d, %Y %I:%M %p"):
        try:
            dt = datetime.strptime(value.strip(), fmt)
        except ValueError:
            continue
        return wall_ts(dt.year, dt.month, dt.day, dt.hour, dt.minute)
    try:
        return parse_iso(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _sillytavern(path: Path, encoding: str, stats: ReadStats) -> Iterator[Message]:
    chat = ""
    for at, record in _records(path, encoding, stats):
        if not isinstance(record, dict):
            stats.add_bad(at, "not a JSON object")
            continue
        if "mes" not in record:
            if "user_name" in record or "character_name" in record:
                chat = str(record.get("character_name") or "")
                stats.skip("metadata")
            else:
                stats.add_bad(at, "no 'mes'")
            continue
        if not isinstance(record["mes"], str):
            stats.add_bad(at, "'mes' is not text")
            continue
        role = "system" if record.get("is_system") else "user" if record.get("is_user") else "assistant"
        speaker = str(record.get("name") or role)
        try:
            ts = _st_time(record.get("send_date"))
        except (ValueError, OverflowError):  # OverflowError: an integer too big for a float
            ts = None
        meta = {"swipes": len(record["swipes"])} if isinstance(record.get("swipes"), list) else {}
        stats.read += 1
        yield Message(ts=ts, speaker=speaker, text=record["mes"], speaker_id=speaker, chat=chat,
                      role=role, conv=0, meta=meta)


def read(path: Path, encoding: str, stats: ReadStats, fmt: str) -> Iterator[Message]:
    if fmt == "sillytavern":
        yield from _sillytavern(path, encoding, stats)
        return
    per_record = _RECORD_READERS[fmt]
    conv = 0
    for at, record in _records(path, encoding, stats):
        if not isinstance(record, dict):
            stats.add_bad(at, "not a JSON object")
            continue
        try:
            messages = per_record(record, conv, stats)
        except BadRecord as exc:
            stats.add_bad(at, str(exc))
            continue
        except SkipRecord as exc:
            stats.skip(str(exc))
            continue
        if not messages:
            stats.add_bad(at, "no usable turns")
            continue
        conv += 1
        stats.read += len(messages)
        yield from messages
