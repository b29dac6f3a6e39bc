"""Entry point for the TUI, kept apart from app.py so `persona-studio --help` never imports textual."""

from __future__ import annotations

import os


def run_tui(workspace: str | None) -> int:
    # Python-level prints are captured by Textual while the app runs; these keep libraries'
    # progress bars and advice from being produced at all. No fd redirection: the engine runs
    # in its own process (engine/service.py) with its own log, and the terminal stays the
    # app's, so Textual sees the real size and resizes.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from persona_studio.tui.app import create_app

    app = create_app(workspace)
    app.run()
    return app.return_code or 0
