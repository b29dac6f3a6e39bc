"""The Import stage."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from persona_studio.tui.screens.base import StageScreen


class ImportScreen(StageScreen):
    STAGE_TITLE = "Import"

    def compose_body(self) -> ComposeResult:
        yield Static("Import", classes="stage-title")
        yield Static("Import chat exports into a persona (headless: persona-studio import FILE --persona ID --me SPEAKER).", classes="hint")
