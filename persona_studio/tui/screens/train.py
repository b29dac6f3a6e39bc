"""The Train stage."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from persona_studio.tui.screens.base import StageScreen


class TrainScreen(StageScreen):
    STAGE_TITLE = "Train"

    def compose_body(self) -> ComposeResult:
        yield Static("Train", classes="stage-title")
        yield Static("Train a QLoRA adapter per persona as a background job (headless: persona-studio train --persona ID).", classes="hint")
