"""Chat-log importers: detect a file's format by content, stream its messages.

```python
from persona_studio.ingest import FORMATS, detect, read, ReadStats, speakers
stats = ReadStats()
for message in read(Path("chat.csv"), stats=stats):   # streaming; `Message` from .base
    ...
stats.read, stats.bad, stats.bad_examples, stats.encoding, stats.format
```
`read_blocks(path, stats=stats)` is the importer's path: the same records in Blocks, one
Arrow record batch each (store/blocks.py); WeChat CSV, the format that runs to millions of
rows, is parsed by pyarrow straight into them (ingest/wechat.py) without a Message per row.
Whole-file problems (unknown format, binary, truncated JSON, missing CSV columns) raise
`ImportError_` with one line naming the file and line/record; a single bad record inside a
good file is counted in `stats.bad` instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from persona_studio.ingest import discord, generic, qq, telegram, telegram_html, wechat, wechatmsg, whatsapp
from persona_studio.ingest.base import ImportError_, Message
from persona_studio.ingest.common import ReadStats
from persona_studio.ingest.encoding import sniff

if TYPE_CHECKING:
    from persona_studio.store.blocks import Block

__all__ = ["FORMATS", "ImportError_", "Message", "ReadStats", "detect", "read", "read_blocks", "speakers"]

FORMATS: tuple[str, ...] = (
    "wechat", "telegram", "whatsapp", "qq", "discord",
    "openai", "sharegpt", "alpaca", "chatglm", "sillytavern", "dpo", "kto",
)

Reader = Callable[[Path, str, ReadStats], Iterator[Message]]
# A format's other shapes (the same app's or tool's second export format), read under its name:
# (sniff, read), tried before the format's own reader.
_SHAPES: dict[str, tuple[tuple[Callable[[str], bool], Reader], ...]] = {
    "telegram": ((telegram_html.sniff, telegram_html.read),),  # Telegram Desktop's HTML export
    "wechat": ((wechatmsg.sniff, wechatmsg.read),),  # WeChatMsg / MemoTrace's CSV
}


def _shape(fmt: str, head: str) -> Reader | None:
    return next((read for sniff, read in _SHAPES.get(fmt, ()) if sniff(head)), None)


def _sniffer(fmt: str, own: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda head: own(head) or _shape(fmt, head) is not None


_SNIFFERS: dict[str, Callable[[str], bool]] = {
    name: _sniffer(name, own) for name, own in {
        "wechat": wechat.sniff, "telegram": telegram.sniff, "whatsapp": whatsapp.sniff,
        "qq": qq.sniff, "discord": discord.sniff, **generic.SNIFFERS,
    }.items()
}
# Most specific first: Discord and Telegram JSON before the dataset shapes, and ChatGLM's
# role/content conversations before ShareGPT (whose reader accepts those too).
# Preference datasets (dpo: chosen/rejected, kto: label) before the SFT shapes they extend.
_DETECT_ORDER = ("discord", "telegram", "dpo", "kto", "sillytavern", "openai", "chatglm", "sharegpt", "alpaca",
                 "wechat", "whatsapp", "qq")


def _detect_text(head: str) -> str | None:
    for name in _DETECT_ORDER:
        if _SNIFFERS[name](head):
            return name
    return None


def _unknown(path: Path) -> ImportError_:
    return ImportError_(
        f"{path}: unknown format (not a WeChat CSV, Telegram JSON/HTML, Discord JSON, WhatsApp/QQ text "
        f"or {'/'.join(generic.NAMES)} dataset)"
    )


def detect(path: Path) -> str:
    """The format of `path`, judged by its content (the name's extension is ignored)."""
    path = Path(path)
    _, head = sniff(path)
    name = _detect_text(head)
    if name is None:
        raise _unknown(path)
    return name


def _messages(path: Path, fmt: str, encoding: str, stats: ReadStats, head: str) -> Iterator[Message]:
    shape = _shape(fmt, head)
    if shape is not None:
        return shape(path, encoding, stats)
    if fmt in ("dpo", "kto"):  # preference pairs; the importer stores them through prefs/imports.py
        from persona_studio.prefs import imports as pref_imports

        return pref_imports.messages(path, fmt, encoding, stats)
    if fmt in generic.NAMES:
        return generic.read(path, encoding, stats, fmt)
    module = {"wechat": wechat, "telegram": telegram, "whatsapp": whatsapp, "qq": qq, "discord": discord}[fmt]
    return module.read(path, encoding, stats)


def _resolve(path: Path, fmt: str, stats: ReadStats) -> tuple[str, str, str]:
    """(format, encoding, head) of `path` after the whole-file checks; records the first two in `stats`."""
    if fmt != "auto" and fmt not in FORMATS:
        raise ImportError_(f"{path}: unknown format name {fmt!r} (choose from auto, {', '.join(FORMATS)})")
    encoding, head = sniff(path)
    if fmt == "auto":
        found = _detect_text(head)
        if found is None:
            raise _unknown(path)
        fmt = found
    elif not _SNIFFERS[fmt](head):
        seen = _detect_text(head)
        looks = f"it looks like {seen}" if seen else "its content matches no known format"
        article = "an" if fmt[0] in "aeiou" else "a"
        raise ImportError_(f"{path}: not {article} {fmt} file ({looks})")
    stats.encoding, stats.format = encoding, fmt
    return fmt, encoding, head


def read(path: Path, fmt: str = "auto", stats: ReadStats | None = None) -> Iterator[Message]:
    """Stream the messages of `path`. Checks (format, encoding, not empty/binary) happen
    at call time; per-record problems are counted in `stats` while iterating."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    fmt, encoding, head = _resolve(path, fmt, stats)
    return _messages(path, fmt, encoding, stats, head)


def read_blocks(path: Path, fmt: str = "auto", stats: ReadStats | None = None) -> Iterator[Block]:
    """The records of `read` in Blocks (checks, and so errors, are the same either way)."""
    from persona_studio.store.blocks import blocks_of

    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    fmt, encoding, head = _resolve(path, fmt, stats)
    if fmt == "wechat" and _shape(fmt, head) is None:
        return wechat.read_blocks(path, encoding, stats)
    return blocks_of(_messages(path, fmt, encoding, stats, head))


def speakers(path: Path, fmt: str = "auto") -> list[tuple[str, int]]:
    """(speaker, message count), most messages first (ties keep first-seen order). Notices
    nobody wrote (speaker "") are not a speaker anyone could be."""
    from persona_studio.store.blocks import value_counts

    counts: Counter[str] = Counter()
    for block in read_blocks(path, fmt):
        counts.update(dict(value_counts(block.batch.column("speaker"), counts)))
    return [(name, n) for name, n in counts.most_common() if name]
