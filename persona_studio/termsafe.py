"""Text from untrusted files (cards, chat exports), made safe to put on a terminal.

A chat message or a card field can hold ESC/CSI/OSC sequences (retitle the window, clear the
screen, write the clipboard) or C1 controls; Textual and print() pass them to the terminal
as they are. Tab and newline stay; CR and CRLF become newlines (a bare CR would let text
overwrite what came before it on the line).
"""

from __future__ import annotations

import json
import re

# C0 and C1 control characters but tab and newline, and DEL.
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    if not CONTROLS.search(text):
        return text
    return CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


# json.dumps escapes C0 controls but, with ensure_ascii=False, writes DEL and C1 (U+0080-U+009F,
# e.g. U+009B, an 8-bit CSI) as they are; they can only stand inside JSON strings, where \uXXXX
# means the same character.
_JSON_RAW = re.compile("[\x7f-\x9f]")


def json_text(obj: object, indent: int | None = None) -> str:
    """JSON for a terminal: readable non-ASCII text, every control character escaped."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
