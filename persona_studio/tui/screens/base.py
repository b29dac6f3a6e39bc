"""The stage list and the base class every stage screen shares (status line + footer)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from persona_studio.tui.widgets.stagebar import StageBar
from persona_studio.tui.widgets.status import StatusLine


class StageScreen(Screen):
    """A stage: status line and stage bar on top, the stage's body, the key footer at the bottom."""

    STAGE_TITLE = ""
    # No automatic focus on a text field: keys 1-6 must switch stage when a screen opens.
    AUTO_FOCUS = ""

    STAGE_MODE = ""  # the mode this screen is registered under (set by STAGES' factory)

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        yield StageBar(self.STAGE_MODE, id="stagebar")
        yield from self.compose_body()
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:  # overridden by each stage
        yield from ()

    @property
    def workspace(self):
        return self.app.workspace  # type: ignore[attr-defined]

    PERSONA_SELECT = ""  # a stage with a persona picker names it; it is refreshed on every visit

    def on_screen_resume(self) -> None:
        # personas may have been added meanwhile (another stage, or `persona import` in a shell)
        if self.PERSONA_SELECT:
            self.fill_personas(self.PERSONA_SELECT)

    def fill_personas(self, selector: str, ids: list[str] | None = None) -> None:
        """Offer the workspace's personas in a Select, keeping the current choice if it still exists."""
        from textual.widgets import Select

        ids = self.workspace.persona_ids() if ids is None else ids
        if getattr(self, "_persona_options", None) == (selector, ids):
            return  # unchanged: re-setting would fire Select.Changed and reset the stage
        self._persona_options = (selector, ids)
        sel = self.query_one(selector, Select)
        keep = sel.value if sel.value in ids else (ids[0] if ids else None)
        sel.set_options([(p, p) for p in ids])
        if keep is not None:
            sel.value = keep


def _lazy(module: str, cls: str, mode: str = "") -> Callable[[], Screen]:
    # Screens are imported when first shown, so start-up pays only for the first stage.
    def factory() -> Screen:
        screen = getattr(importlib.import_module(f"persona_studio.tui.screens.{module}"), cls)()
        screen.STAGE_MODE = mode or module.rstrip("_")
        return screen

    return factory


# (mode, key, title, factory)
STAGES: list[tuple[str, str, str, Callable[[], Screen]]] = [
    ("import", "1", "Import", _lazy("import_", "ImportScreen")),
    ("review", "2", "Review", _lazy("review", "ReviewScreen")),
    ("train", "3", "Train", _lazy("train", "TrainScreen")),
    ("chat", "4", "Chat", _lazy("chat", "ChatScreen")),
    ("party", "5", "Tea party", _lazy("party", "PartyScreen")),
    ("export", "6", "Export", _lazy("export", "ExportScreen")),
    ("eval", "7", "Eval", _lazy("eval", "EvalScreen")),
]
