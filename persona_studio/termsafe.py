"""Text from untrusted files (cards, chat exports), made safe to put on a terminal.

A chat message or a card field can hold ESC/CSI/OSC sequences (retitle the window, clear the
screen, write the clipboard) or C1 controls; Textual and print() pass them to the terminal
as they are. Tab and newline stay; CR and CRLF become newlines (a bare CR would let text
overwrite what came before it on the line).
"""

from __future__ import annotations

import re

# C0 and C1 control characters but tab and newline, and DEL.
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    if not CONTROLS.search(text):
        return text
    return CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
