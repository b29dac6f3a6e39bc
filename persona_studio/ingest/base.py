"""The common record every importer yields, and the errors they raise."""

from __future__ import annotations

import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from persona_studio.errors import UserError

if TYPE_CHECKING:
    from persona_studio.store.blocks import Block

# What a message is. Only "text" becomes training data; the rest are skipped or cut the
# conversation (settings: make_dataset.non_text). "forward": text forwarded from elsewhere
# (a channel post, another chat) - someone else's words, not the persona's.
Kind = Literal["text", "image", "sticker", "voice", "video", "file", "quote", "forward", "system", "recall", "other"]


@dataclass(slots=True)
class Message:
    """One chat message as imported, before any cleaning.

    ts: POSIX seconds (UTC for zone-aware sources, local wall time read as UTC otherwise),
        None where the source has no time (generic datasets).
    chat: the conversation/room the message belongs to ("" for one-to-one exports).
    speaker: display name; speaker_id: stable id where the source has one, else the name.
    role: set only by sources that already know roles (OpenAI/ShareGPT/Alpaca…): "user",
        "assistant" or "system"; chat exports leave it None and `--me` decides.
    conv: for generic datasets, the index of the conversation the message belongs to, so
        sample boundaries are kept as the source had them; None for chat exports.
    """

    ts: float | None
    speaker: str
    text: str
    kind: Kind = "text"
    speaker_id: str = ""
    chat: str = ""
    role: str | None = None
    conv: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class ImportError_(UserError, ValueError):
    """A whole-file failure: one line naming the file and line/record. Nothing is stored."""


def check_readable(path: Path) -> None:
    """ImportError_ (one line) unless `path` is a regular file this process can read: a
    directory, a pipe or an unreadable file is named as such, never a traceback later."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ImportError_(f"{path}: no such file") from None
    except OSError as exc:
        raise ImportError_(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise ImportError_(f"{path}: is a directory, not a chat export (name the export file inside it)")
    if not stat.S_ISREG(mode):
        # A pipe (`<(...)`) can be read only once; sniffing the format already reads it.
        raise ImportError_(f"{path}: not a regular file (save the export to a file first)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ImportError_(f"{path}: cannot read ({exc.strerror or exc})") from None


# Python lists of at most about this much text at a time: a Block may hold megabytes.
_SLICE_BYTES = 1 << 18


def _slices(block: Block) -> Iterator[Block]:
    """The block in row slices of about _SLICE_BYTES of text each (no copy)."""
    import pyarrow.compute as pc

    from persona_studio.store.blocks import Block

    n = len(block)
    text_bytes = pc.sum(pc.binary_length(block.batch.column("text"))).as_py() or 0
    if text_bytes <= _SLICE_BYTES:
        yield block
        return
    step = max(1, n * _SLICE_BYTES // text_bytes)
    for start in range(0, n, step):
        yield Block.of(block.batch.slice(start, step), block.first_seq + start)


def messages_of(blocks: Iterable[Block]) -> Iterator[Message]:
    """The Messages of Blocks, one by one (for callers that want records, not columns)."""
    from itertools import repeat

    for b in (part for block in blocks for part in _slices(block)):
        n = len(b)
        meta = b.meta
        roles = meta.get("role") or repeat(None, n)
        convs = meta.get("conv") or repeat(None, n)
        names = [k for k in meta if k not in ("role", "conv")]
        rows = zip(*(meta[k] for k in names), strict=True) if names else repeat((), n)
        for ts, speaker, text, kind, speaker_id, chat, role, conv, values in zip(
            b.ts.tolist(), b.speaker, b.text, b.kind, b.speaker_id, b.chat, roles, convs, rows, strict=True
        ):
            yield Message(
                None if ts != ts else ts, speaker, text, kind, speaker_id, chat, role, conv,  # NaN: no time
                {k: v for k, v in zip(names, values, strict=True) if v is not None} if names else {},
            )
