"""Train screen details: which job is selected, and the job table beside (not under) the plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from textual.widgets import DataTable

from persona_studio.tui.app import create_app
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import add_persona
from tests.tui_helpers import wait_until


def fake_job(ws: Workspace, job_id: str, state: str, created: str) -> None:
    """A finished job's files as the worker leaves them (the screen only reads files)."""
    d = ws.jobs_dir / job_id
    d.mkdir(parents=True)
    (d / "status.json").write_text(json.dumps({"job_id": job_id, "persona_id": "alice", "state": state,
                                               "step": 4, "total_steps": 4, "created_at": created}))
    (d / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "total_steps": 4, "loss": 2.0 / s, "tokens_per_s": 50, "eta": 0}) + "\n"
        for s in range(1, 5)))
    (d / "train.log").write_text("worker: done\n")


async def test_selection_follows_the_new_job_and_survives_table_rebuilds(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    add_persona(ws, "alice")
    fake_job(ws, "alice-20261130-100000", "done", "2026-11-30T10:00:00Z")
    fake_job(ws, "alice-20261130-110000", "failed", "2026-11-30T11:00:00Z")
    app = create_app(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_until(pilot, lambda: app.current_mode == "train")
        screen = app.screen
        table = screen.query_one("#train-jobs", DataTable)
        await wait_until(pilot, lambda: table.row_count == 2)
        assert screen.selected == "alice-20261130-110000" and table.cursor_row == 1  # the newest
        # Columns fit, and the table ends where the plot begins.
        plot = screen.query_one("#train-plot")
        assert table.region.right <= plot.region.x
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= table.region.width
        # A job just started (what the Start key's worker sets) is selected once it appears,
        # although rebuilding the table moves the cursor.
        fake_job(ws, "alice-20261130-120000", "done", "2026-11-30T12:00:00Z")
        screen.selected = "alice-20261130-120000"
        await wait_until(pilot, lambda: table.row_count == 3, timeout=5)
        await wait_until(pilot, lambda: "alice-20261130-120000" in str(screen.query_one("#train-stats").render()))
        assert screen.selected == "alice-20261130-120000" and table.cursor_row == 2
        # The user picks an older job: it stays picked when another job appears.
        table.move_cursor(row=0)
        await wait_until(pilot, lambda: screen.selected == "alice-20261130-100000")
        fake_job(ws, "alice-20261130-130000", "done", "2026-11-30T13:00:00Z")
        await wait_until(pilot, lambda: table.row_count == 4, timeout=5)
        await pilot.pause(0.3)
        assert screen.selected == "alice-20261130-100000" and table.cursor_row == 0


async def test_a_queued_job_that_starts_shows_running_in_full(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    add_persona(ws, "alice")
    fake_job(ws, "alice-20261130-100000", "queued", "2026-11-30T10:00:00Z")
    app = create_app(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_until(pilot, lambda: app.current_mode == "train")
        table = app.screen.query_one("#train-jobs", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1)
        status = ws.jobs_dir / "alice-20261130-100000" / "status.json"
        # Running, as the worker writes it, with a live process the job check takes for a worker.
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "persona_studio.train.worker"])
        try:
            status.write_text(json.dumps({**json.loads(status.read_text()), "state": "running", "pid": worker.pid}))
            await wait_until(pilot, lambda: table.get_cell_at((0, 1)) == "running", timeout=10)
            await pilot.pause(0.2)
            lines = ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]
            row = next(line for line in lines if line.lstrip().startswith("alice-20261130-100000 "))
            assert row.split()[1] == "running", row  # the table's row (the stats line says it too)
        finally:
            worker.kill()
            worker.wait()
