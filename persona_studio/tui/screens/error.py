"""Shown instead of the stages when the workspace cannot be opened."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static


class ErrorScreen(Screen):
    # ctrl+q and ctrl+c also leave (exit 2): StudioApp.action_quit knows there is no workspace.
    BINDINGS = [Binding("q,escape,ctrl+c", "leave", "Quit")]

    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="error-panel"):
            yield Static("[b]persona-studio cannot open this workspace[/b]", id="error-title")
            yield Static(self.message, id="error-message", markup=False)
            yield Static(
                "Fix the problem above (or run `persona-studio init DIR` to create a workspace),"
                " then start persona-studio again. Nothing was changed.",
                id="error-hint",
            )
        yield Footer()

    def action_leave(self) -> None:
        self.app.exit(return_code=2)  # the CLI exits non-zero: the workspace did not open
