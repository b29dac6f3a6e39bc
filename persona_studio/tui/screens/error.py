"""Shown instead of the stages when the workspace cannot be opened."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static


class ErrorScreen(Screen):
    # ctrl+q and ctrl+c also leave (exit 2): StudioApp.action_quit knows there is no workspace.
    BINDINGS = [Binding("q,escape,ctrl+c", "leave", "Quit"), Binding("i", "create", "Create a workspace here")]

    def __init__(self, message: str, create_at: Path | None = None):
        super().__init__()
        self.message = message
        self.create_at = create_at  # where a workspace can be created (there is none yet)

    def compose(self) -> ComposeResult:
        with Vertical(id="error-panel"):
            yield Static("[b]persona-studio cannot open this workspace[/b]", id="error-title")
            yield Static(self.message, id="error-message", markup=False)
            if self.create_at is not None:
                hint = (f"Press i to create a workspace in {self.create_at} (a commented settings.jsonc and "
                        "personas/) and open the studio there, or q to leave. Nothing was changed.")
            else:
                hint = ("Fix the problem above (or run `persona-studio init DIR` to create a workspace),"
                        " then start persona-studio again. Nothing was changed.")
            yield Static(hint, id="error-hint", markup=False)
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return action != "create" or self.create_at is not None

    def action_create(self) -> None:
        from persona_studio.errors import UserError

        try:
            self.app.create_workspace()  # type: ignore[attr-defined]
        except (UserError, OSError) as exc:
            self.query_one("#error-message", Static).update(f"could not create the workspace: {exc}")
            self.create_at = None
            self.refresh_bindings()

    def action_leave(self) -> None:
        self.app.exit(return_code=2)  # the CLI exits non-zero: the workspace did not open
