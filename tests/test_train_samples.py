"""Samples while training: the worker answers probe questions every eval.sample_every_steps steps
with the weights of that moment; samples.jsonl holds them and the Train screen shows the newest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Static

from persona_studio.eval.samples import read_samples
from persona_studio.train import jobs
from persona_studio.tui.app import create_app
from persona_studio.workspace import Workspace, atomic_write
from tests.train_helpers import add_persona, add_samples, chat, make_ws
from tests.tui_helpers import wait_until

pytestmark = pytest.mark.slow


def _ws(tmp_path: Path, tiny_model: Path, quantization: str) -> Workspace:
    ws = make_ws(tmp_path / "ws", tiny_model, max_steps=4, quantization=quantization, gradient_checkpointing=True)
    raw = json.loads(ws.settings_path.read_text())
    raw["eval"] = {"sample_every_steps": 2, "sample_probes": 2, "max_new_tokens": 8}
    atomic_write(ws.settings_path, json.dumps(raw))
    ws = Workspace.open(ws.root)
    add_persona(ws, "alice", system_prompt="You are {{char}}.")
    add_samples(ws, "alice", [chat("Who are you?", "I am Alice, I like tea.")])
    return ws


@pytest.mark.parametrize("quantization", ["none", "nf4"])
async def test_worker_writes_probe_replies_and_the_train_screen_shows_them(tmp_path, tiny_model, quantization):
    ws = _ws(tmp_path, tiny_model, quantization)
    job = jobs.start_job(ws, "alice")
    done = jobs.wait_job(ws, job.job_id, timeout=300)
    assert done.state == "done", (done.error, jobs.tail_log(done.job_dir, 30))
    probes = json.loads((Path(done.job_dir) / "probes.json").read_text())
    assert probes["questions"] == ws.settings.eval.probes_en[:2] and probes["system"] == "You are Alice."
    lines = read_samples(done.job_dir)
    assert [x["step"] for x in lines] == [2, 4]
    assert all([s["question"] for s in x["samples"]] == probes["questions"] for x in lines)
    assert all(isinstance(s["reply"], str) for x in lines for s in x["samples"])
    # the metrics (and so tokens/s) are untouched by sampling steps
    assert [m["step"] for m in jobs.read_metrics(done.job_dir)] == [1, 2, 3, 4]

    app = create_app(ws.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await wait_until(pilot, lambda: app.current_mode == "train")
        panel = app.screen.query_one("#train-samples", Static)
        await wait_until(pilot, lambda: "samples at step 4" in str(panel.render()), timeout=20)
        assert probes["questions"][0] in str(panel.render())
