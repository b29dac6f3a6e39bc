"""The Review stage."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from persona_studio.tui.screens.base import StageScreen


class ReviewScreen(StageScreen):
    STAGE_TITLE = "Review"

    def compose_body(self) -> ComposeResult:
        yield Static("Review", classes="stage-title")
        yield Static("Review samples: score histogram, blocked-word hits, edit/accept/reject with undo.", classes="hint")
