"""The Train screen drives a real (tiny, CPU, 4-bit) training job and shows its live metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual_plotext import PlotextPlot

from persona_studio.tui.app import create_app
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import add_persona
from tests.tui_helpers import wait_until


def make_ws(tmp_path: Path, tiny_model: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    ws.settings_path.write_text(json.dumps({
        "model": {"name_or_path": str(tiny_model)},
        "train_sft_args": {"max_steps": 6, "cutoff_len": 64, "per_device_train_batch_size": 2,
                           "gradient_accumulation_steps": 1, "identity_samples": 2, "save_steps": 3,
                           "eval_ratio": 0.0, "gradient_checkpointing": False},
    }))
    (ws.personas_dir / "alice").mkdir()
    (ws.personas_dir / "alice" / "persona.jsonc").write_text('{"name": "Alice", "description": "a tea-shop owner"}')
    ws = Workspace.open(ws.root)
    with ws.store() as store, store.tx() as db:
        for i in range(8):
            turns = [{"role": "user", "content": f"hello {i}"}, {"role": "assistant", "content": "The tea is ready."}]
            db.execute("INSERT INTO samples(persona_id, hash, turns, n_turns, status) VALUES ('alice', ?, ?, 2, 'accepted')",
                       (f"h{i}", json.dumps(turns)))
    return ws


@pytest.mark.slow
async def test_train_screen_starts_job_and_plots_loss(tmp_path: Path, tiny_model: Path) -> None:
    ws = make_ws(tmp_path, tiny_model)
    app = create_app(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_until(pilot, lambda: app.current_mode == "train")
        screen = app.screen
        await pilot.press("o")  # per-job settings, checked by the settings schema
        await wait_until(pilot, lambda: app.screen is not screen)
        app.screen.query_one("#t-lora_rank").value = "7"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "must be one of 1, 8, 16" in str(app.screen.query_one("#train-settings-error").render())
        app.screen.query_one("#t-lora_rank").value = "8"
        app.screen.query_one("#t-max_steps").value = "5"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: app.screen is screen)
        await pilot.press("s")
        stats = app.screen.query_one("#train-stats")
        await wait_until(pilot, lambda: ": done" in str(stats.render()) or "failed" in str(stats.render()),
                         timeout=240)
        text = str(stats.render())
        assert ": done" in text and "loss" in text and "tok/s" in text, text
        assert app.screen.metrics and app.screen.metrics[-1]["step"] == 5  # the override, not settings' 6
        assert app.screen.query_one(PlotextPlot).plt  # plot widget exists and was drawn
        await pilot.press("l")  # the log view
        await pilot.pause()
        assert "worker: done" in str(app.screen.query_one("#train-log").render())
    assert (ws.persona_dir("alice") / "adapters" / "CURRENT").exists()


async def test_train_screen_reports_refusal(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    add_persona(ws, "bob")
    app = create_app(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_until(pilot, lambda: app.current_mode == "train")
        await pilot.press("s")
        stats = app.screen.query_one("#train-stats")
        await wait_until(pilot, lambda: "bob" in str(stats.render()) and "checking" not in str(stats.render()),
                         timeout=60)
        assert "sample" in str(stats.render())  # refused: bob has no samples to train on
        assert not list(ws.jobs_dir.glob("*/status.json"))  # refused before any job was created
