"""Entry point for the TUI, kept apart from app.py so `persona-studio --help` never imports textual."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


def run_tui(workspace: str | None) -> int:
    from persona_studio.tui.app import create_app

    app = create_app(workspace)
    log = app.workspace.state_dir / "studio.log" if app.workspace is not None else None
    with _stray_output_to(log):
        app.run()
    return app.return_code or 0


@contextlib.contextmanager
def _stray_output_to(log: Path | None) -> Iterator[None]:
    """Send what libraries and engine worker processes write to fds 1/2 into `log`.

    vLLM's worker processes, CUDA and tokenizers write straight to the inherited file
    descriptors, which would scribble over the screen. Textual draws on `sys.__stderr__`, so
    that object is pointed at a duplicate of the terminal before fds 1 and 2 are redirected.
    """
    if log is None or not (os.isatty(1) and os.isatty(2)):
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    saved = os.dup(1), os.dup(2)
    term = os.fdopen(os.dup(2), "w", encoding=sys.__stderr__.encoding or "utf-8", errors="replace")
    old_stderr = sys.__stderr__
    with open(log, "ab") as fh:
        try:
            sys.__stderr__ = term
            os.dup2(fh.fileno(), 1)
            os.dup2(fh.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            sys.__stderr__ = old_stderr
            term.close()
            for fd in saved:
                os.close(fd)
