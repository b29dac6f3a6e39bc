"""The studio app: one mode (and base screen) per pipeline stage.

The workspace is opened before anything paints; if that fails (missing directory, broken
settings.jsonc, newer database) the app shows an error screen instead of the stages, so the
user gets a readable message and a way out — never a traceback. Heavy libraries are only
imported by the screens' thread workers.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from persona_studio.errors import UserError
from persona_studio.tui.screens.base import STAGES
from persona_studio.workspace import Workspace


class StudioApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "persona-studio"
    BINDINGS = [
        *(Binding(key, f"stage('{mode}')", title, show=True) for mode, key, title, _ in STAGES),
        Binding("ctrl+q", "quit", "Quit", show=True, priority=True),
        Binding("f1", "help", "Help", show=False),
        # Digits type into inputs; escape leaves the input so digits switch stage again.
        Binding("escape", "unfocus", "Leave field", show=False),
    ]

    def __init__(self, workspace: Workspace | None, error: str | None = None):
        super().__init__()
        self.workspace = workspace
        self.startup_error = error
        self.engine = None  # set by the Chat/Party screens when an engine is running
        self.engine_state = "not started"

    def on_mount(self) -> None:
        if self.workspace is None:
            from persona_studio.tui.screens.error import ErrorScreen

            self.push_screen(ErrorScreen(self.startup_error or "no workspace"))
            return
        for mode, _key, _title, factory in STAGES:
            self.add_mode(mode, factory)
        self.switch_mode("import")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Without a workspace there are no stages: hide their keys from the footer.
        if action == "stage" and self.workspace is None:
            return False
        return True

    def action_stage(self, mode: str) -> None:
        if self.workspace is not None and self.current_mode != mode:
            self.switch_mode(mode)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if self.workspace is None:
            return
        for mode, key, title, _ in STAGES:
            yield SystemCommand(
                f"Go to {title}", f"Switch to the {title} stage (key {key})",
                lambda m=mode: self.action_stage(m),
            )

    def action_unfocus(self) -> None:
        self.set_focus(None)

    def action_help(self) -> None:
        self.notify(
            "Keys 1-6 switch stage (escape leaves a text field first); ctrl+p opens the command palette; ctrl+q quits.", title="Help"
        )

    def set_engine_state(self, state: str) -> None:
        self.engine_state = state
        from persona_studio.tui.widgets.status import StatusLine

        for line in self.screen.query(StatusLine):
            line.refresh_status()


def create_app(workspace: str | Path | None) -> StudioApp:
    """The one app factory, used by the CLI and by tests."""
    try:
        ws = Workspace.open(workspace)
        ws.store().close()  # migrate now, and refuse a newer schema before painting stages
    except UserError as exc:
        return StudioApp(None, str(exc))
    return StudioApp(ws)
