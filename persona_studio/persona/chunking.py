"""Cut lore text into retrieval chunks: sections by heading, then paragraphs, then windows.

Splitting on structure first keeps a fact and its heading together, which is what makes a
small embedder like MiniLM find it; only paragraphs longer than a chunk are cut in windows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from persona_studio import jsondepth
from persona_studio.errors import UserError

_HEADING = re.compile(r"^#{1,6}\s+\S")
# Where a long paragraph may be cut: after sentence ends (Latin and CJK), else any space.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])\s*")


class LoreFileError(UserError, ValueError):
    """A one-line error about a lore file: `path:line: problem`."""


def sections(text: str) -> list[tuple[str, list[str]]]:
    """[(heading line or "", [paragraph, ...]), ...] in order."""
    out: list[tuple[str, list[str]]] = [("", [])]
    para: list[str] = []

    def flush() -> None:
        if para:
            out[-1][1].append("\n".join(para).strip())
            para.clear()

    for line in text.replace("\r\n", "\n").split("\n"):
        if _HEADING.match(line):
            flush()
            out.append((line.strip(), []))
        elif not line.strip():
            flush()
        else:
            para.append(line.rstrip())
    flush()
    return [(h, ps) for h, ps in out if ps or h]


def _tail(text: str, n: int) -> str:
    if n <= 0 or len(text) <= n:
        return "" if n <= 0 else text
    cut = text[-n:]
    # Start the carried-over text at a sentence if one begins inside it, else at a word.
    sentence = _SENTENCE_END.search(cut)
    if sentence and sentence.end() < len(cut):
        return cut[sentence.end() :]
    space = cut.find(" ")
    return cut[space + 1 :] if 0 <= space < n // 2 else cut


def windows(para: str, size: int, overlap: int) -> list[str]:
    """Cut one long paragraph into pieces of at most `size`, neighbours sharing ~`overlap`."""
    overlap = min(overlap, size // 2)  # more overlap than half a chunk would never advance
    out: list[str] = []
    start = 0
    while start < len(para):
        end = min(start + size, len(para))
        if end < len(para):
            # Prefer a sentence end, then a space, in the second half of the window.
            window = para[start:end]
            cuts = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() >= size // 2]
            if not cuts:
                cuts = [i + 1 for i, c in enumerate(window) if c.isspace() and i + 1 >= size // 2]
            if cuts:
                end = start + cuts[-1]
        piece = para[start:end].strip()
        if piece:
            out.append(piece)
        if end >= len(para):
            break
        start = max(end - overlap, start + 1)
        # Don't begin a window mid-word when a space is close by.
        nxt = para.find(" ", start, end)
        if overlap and 0 <= nxt < end:
            start = nxt + 1
    return out


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    chunks: list[str] = []
    for heading, paras in sections(text):
        prefix = heading + "\n" if heading else ""
        pieces = [p for para in paras for p in (windows(para, size, overlap) if len(para) > size else [para])]
        if not pieces and heading:
            continue
        current = ""
        for piece in pieces:
            if current and len(current) + 2 + len(piece) > size:
                chunks.append(prefix + current)
                tail = _tail(current, overlap)
                current = tail + "\n\n" + piece if tail and len(tail) + 2 + len(piece) <= size else piece
            else:
                current = current + "\n\n" + piece if current else piece
        if current:
            chunks.append(prefix + current)
    return chunks


def record_text(keys: Iterable[str], content: str, title: str = "") -> str:
    """One lore record (a card book entry or a JSONL line) as text an embedder can match."""
    head = [title] if title else []
    keys = [k for k in keys if k.strip()]
    if keys:
        head.append("Keys: " + ", ".join(keys))
    return "\n".join([*head, content.strip()])


def jsonl_records(text: str, source: str) -> list[str]:
    """Lore JSONL: one object per line, {"content"|"text": str, "keys"?: [str], "name"?: str}."""
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = jsondepth.loads(line)  # json.loads dies of a RecursionError on hostile nesting
        except jsondepth.TooDeep as exc:
            raise LoreFileError(f"{source}:{lineno}: {exc} (refused)") from None
        except json.JSONDecodeError as exc:
            raise LoreFileError(f"{source}:{lineno}: not valid JSON: {exc.msg}") from None
        if isinstance(rec, str):
            rec = {"content": rec}
        if not isinstance(rec, dict):
            raise LoreFileError(f"{source}:{lineno}: expected an object with 'content', got {type(rec).__name__}")
        content = rec.get("content", rec.get("text"))
        if not isinstance(content, str):
            raise LoreFileError(f"{source}:{lineno}: content: expected a string")
        keys = rec.get("keys", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise LoreFileError(f"{source}:{lineno}: keys: expected a list of strings")
        if content.strip():
            out.append(record_text(keys, content, str(rec.get("name", "") or "")))
    return out


def book_records(book: dict | None) -> list[tuple[str, str]]:
    """[(label, text)] for each enabled entry of a card's character_book."""
    out: list[tuple[str, str]] = []
    for i, entry in enumerate((book or {}).get("entries", [])):
        if entry.get("enabled", True) is False or not str(entry.get("content", "")).strip():
            continue
        keys = [*entry.get("keys", []), *(entry.get("secondary_keys") or [])]
        title = str(entry.get("name") or entry.get("comment") or "")
        label = title or (keys[0] if keys else f"entry {i}")
        out.append((label, record_text(keys, entry["content"], title)))
    return out
