"""The stage bar: every stage with its key, the current one marked ("where am I?")."""

from __future__ import annotations

from rich.text import Text
from textual.events import Click
from textual.widgets import Static


class StageBar(Static):
    DEFAULT_CSS = """
    StageBar { height: 1; background: $boost; padding: 0 1; }
    """

    def __init__(self, current: str, **kw: object):
        super().__init__(**kw)  # type: ignore[arg-type]
        self.current = current
        self._spans: list[tuple[int, int, str]] = []

    def on_mount(self) -> None:
        self.update(self.render_bar())

    def render_bar(self) -> Text:
        from persona_studio.tui.screens.base import STAGES

        text = Text(no_wrap=True, overflow="ellipsis")
        self._spans = []
        for i, (mode, key, title, _) in enumerate(STAGES):
            if i:
                text.append(" │ ", style="dim")
            start = text.cell_len
            if mode == self.current:
                text.append(f"▶{key} {title}", style="bold reverse")
            else:
                text.append(f"{key} {title}", style="")
            self._spans.append((start + 1, text.cell_len + 1, mode))  # +1: the left padding
        return text

    async def on_click(self, event: Click) -> None:
        for start, end, mode in self._spans:
            if start <= event.x < end:
                await self.app.run_action(f"stage('{mode}')")
                return
