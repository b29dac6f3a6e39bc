"""Export a chat as shown: the path from the root to `chats.head_id`, not the swipes beside it.

Markdown is for reading and sharing; JSONL (one message per line) is for tools, and keeps the
ids, roles and the adapter that spoke each reply.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from persona_studio.export.files import ExportError, staged_file
from persona_studio.workspace import Workspace

if TYPE_CHECKING:
    from persona_studio.chat.tree import Chat

FORMATS = ("md", "jsonl")


def export_transcript(
    ws: Workspace, chat_id: int, out: str | Path, format: str = "md", *, force: bool = False
) -> dict:
    """Write the shown path of chat `chat_id` to `out`; returns a summary."""
    from persona_studio.chat.tree import ChatTree

    if format not in FORMATS:
        raise ExportError(f"--format {format!r}: choose from {', '.join(FORMATS)}")
    out = Path(out).expanduser()
    store = ws.store()
    try:
        tree = ChatTree(store)
        chat = tree.chat(int(chat_id))
        path = tree.path(chat.id)
    finally:
        store.close()
    rows = [
        {
            "id": m.id,
            "parent_id": m.parent_id,
            "role": m.role,
            "speaker": m.speaker,
            "adapter": m.adapter,
            "content": m.content,
            "created_at": m.created_at,
        }
        for m in path
    ]
    if format == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        text = _markdown(chat, rows)
    with staged_file(out, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return {"chat": chat.id, "title": chat.title, "format": format, "messages": len(rows), "out": str(out)}


def _markdown(chat: Chat, rows: list[dict]) -> str:
    title = chat.title or f"Chat {chat.id}"
    lines = [
        f"# {title}",
        "",
        f"- kind: {chat.kind}",
        f"- personas: {', '.join(chat.personas) or '-'}",
        f"- started: {chat.created_at}",
        f"- exported: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} ({len(rows)} messages)",
        "",
    ]
    for r in rows:
        if r["role"] == "system":
            who = "System"
        else:
            who = f"**{r['speaker'] or r['role']}**"
        note = f" _({r['adapter']})_" if r["role"] == "assistant" and r["adapter"] else ""
        lines += [f"{who}{note}:", "", r["content"].rstrip(), ""]
    return "\n".join(lines)


def default_name(chat_id: int, format: str) -> str:
    return f"chat-{int(chat_id)}.{format}"


__all__ = ["FORMATS", "ExportError", "default_name", "export_transcript"]
