"""The one-line status bar: workspace, base model, engine state, running jobs."""

from __future__ import annotations

import json

from textual.widgets import Static


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.refresh_status()
        # Job states change in another process; a cheap poll of small status files is enough.
        self.set_interval(2.0, self.refresh_status)

    def refresh_status(self) -> None:
        app = self.app
        ws = getattr(app, "workspace", None)
        if ws is None:
            self.update("no workspace")
            return
        model = model_text(app, ws)
        jobs = running_jobs(ws.jobs_dir)
        self.update(
            f"[b]{ws.root.name}[/b] │ model {model} │ engine {getattr(app, 'engine_state', '?')}"
            f" │ jobs {jobs} running"
        )


def running_jobs(jobs_dir) -> int:
    """Count jobs whose status file says running or queued (no heavy imports)."""
    n = 0
    if not jobs_dir.is_dir():
        return 0
    for status in jobs_dir.glob("*/status.json"):
        try:
            state = json.loads(status.read_text(encoding="utf-8")).get("state")
        except (OSError, ValueError):
            continue
        n += state in ("running", "queued")
    return n


def model_text(app: object, ws: object) -> str:
    """The base model and where it lives, e.g. 'smollm2-135m-instruct (built-in, user cache)'.

    Resolved once per workspace object (it may look at caches on disk), not every refresh.
    """
    cached = getattr(app, "_model_text", None)
    if cached is not None and cached[0] is ws:
        return cached[1]
    from persona_studio import basemodel

    try:
        text = basemodel.status_text(ws)
    except Exception:  # noqa: BLE001 - a status line never fails; `info` says what is wrong
        text = ws.settings.model.name_or_path  # type: ignore[attr-defined]
    if len(text) > 44:
        text = "…" + text[-43:]
    app._model_text = (ws, text)  # type: ignore[attr-defined]
    return text
