"""The Tea party stage."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from persona_studio.tui.screens.base import StageScreen


class PartyScreen(StageScreen):
    STAGE_TITLE = "Tea party"

    def compose_body(self) -> ComposeResult:
        yield Static("Tea party", classes="stage-title")
        yield Static("A multi-persona tea party (headless: persona-studio party P1 P2 --turns N).", classes="hint")
