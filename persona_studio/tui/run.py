"""Entry point for the TUI, kept apart from app.py so `persona-studio --help` never imports textual."""

from __future__ import annotations


def run_tui(workspace: str | None) -> int:
    from persona_studio.tui.app import create_app

    app = create_app(workspace)
    app.run()
    return app.return_code or 0
