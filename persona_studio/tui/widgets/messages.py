"""A chat message as shown in the Chat and Party screens: a header line and a markdown body.

While a reply streams, fragments go through Textual's MarkdownStream (it batches updates
the terminal can't keep up with); when the reply ends, one full update replaces the body so
a fence or table split across fragments renders correctly.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Markdown, Static


class MessageView(Vertical, can_focus=True):
    """Focusable (tab / up / down): the message keys act on the focused message and the footer shows them."""

    BINDINGS = [
        Binding("e", "screen.edit", "Edit"),
        Binding("ctrl+r", "screen.regenerate", "Regenerate"),
        Binding("left_square_bracket", "screen.swipe(-1)", "◀ swipe"),
        Binding("right_square_bracket", "screen.swipe(1)", "swipe ▶"),
        Binding("b", "screen.rewind", "Branch here"),
        Binding("d", "screen.delete", "Delete"),
        Binding("up", "screen.focus_message(-1)", "Prev", show=False),
        Binding("down", "screen.focus_message(1)", "Next", show=False),
    ]
    DEFAULT_CSS = """
    MessageView { height: auto; padding: 0 1; margin-bottom: 1; border-left: blank; }
    MessageView:focus { background: $boost; border-left: thick $accent; }
    MessageView .msg-head { color: $text-muted; height: 1; }
    MessageView.user .msg-head { color: $accent; }
    MessageView.error .msg-head { color: $error; }
    MessageView Markdown { margin: 0; padding: 0; }
    """

    def __init__(self, msg: Any | None, *, head: str = "", body: str = "", classes: str = ""):
        super().__init__(classes=classes)
        self.msg = msg
        self._head, self._body = head, body
        self._stream: Any = None
        self._text = body

    def on_focus(self) -> None:
        self.scroll_visible(animate=False)

    def compose(self) -> ComposeResult:
        yield Static(self._head, classes="msg-head", markup=False)
        yield Markdown(self._body)

    def set_head(self, head: str) -> None:
        self._head = head
        self.query_one(".msg-head", Static).update(head)

    async def stream(self, fragment: str) -> None:
        if self._stream is None:
            self._stream = Markdown.get_stream(self.query_one(Markdown))
        self._text += fragment
        await self._stream.write(fragment)

    async def finish(self, text: str | None = None) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self._text = self._text if text is None else text
        await self.query_one(Markdown).update(self._text)

    @property
    def text(self) -> str:
        return self._text


def head_for(msg: Any, names: dict[str, str], swipe: tuple[int, int] | None = None) -> str:
    """`Alice · alice/v0002 · 42 tok · 2/3` — who spoke, through which adapter, swipe position."""
    if msg.role == "user":
        parts = [names.get(msg.speaker, "You")]
    else:
        parts = [names.get(msg.speaker, msg.speaker), msg.adapter or "base"]
        if msg.adapter == "base" or msg.meta.get("base_model"):
            parts[-1] = "base model (no adapter)"
    if msg.n_tokens:
        parts.append(f"{msg.n_tokens} tok")
    if swipe and swipe[1] > 1:
        parts.append(f"swipe {swipe[0]}/{swipe[1]}")
    if msg.meta.get("lore"):
        parts.append(f"lore {len(msg.meta['lore'])}")
    if msg.meta.get("original") is not None:
        parts.append("edited")
    if msg.meta.get("stopped"):
        parts.append("stopped")
    trimmed = msg.meta.get("trimmed") or {}
    if trimmed:
        what = [f"{n} old line{'s' * (n != 1)}" for n in [trimmed.get("history", 0)] if n]
        what += [f"{n} lore" for n in [trimmed.get("lore", 0)] if n]
        what += [f"reply cut to {n} tok" for n in [trimmed.get("reply_max_tokens", 0)] if n]
        parts.append("context full: left out " + ", ".join(what))
    return " · ".join(parts)
