"""The Chat stage."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from persona_studio.tui.screens.base import StageScreen


class ChatScreen(StageScreen):
    STAGE_TITLE = "Chat"

    def compose_body(self) -> ComposeResult:
        yield Static("Chat", classes="stage-title")
        yield Static("Chat with one persona (headless: persona-studio chat PERSONA --message TEXT).", classes="hint")
