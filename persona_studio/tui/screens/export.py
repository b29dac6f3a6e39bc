"""The Export stage."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from persona_studio.tui.screens.base import StageScreen


class ExportScreen(StageScreen):
    STAGE_TITLE = "Export"

    def compose_body(self) -> ComposeResult:
        yield Static("Export", classes="stage-title")
        yield Static("Export datasets, adapters, merged models and character cards (headless: persona-studio export KIND).", classes="hint")
