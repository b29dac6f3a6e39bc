"""The Preferences view (from the Train stage): pairs by source, the full pair beside the list, edit and
delete by key; the Train stage says how many pairs from which sources a preference run used."""

from __future__ import annotations

import json

from textual.widgets import DataTable, Select, TextArea

from persona_studio import cli
from persona_studio.prefs import store as prefs
from persona_studio.tui.app import create_app
from tests.train_helpers import add_persona
from tests.tui_helpers import wait_until


def _pairs(ws):
    with ws.store() as store:
        return prefs.list_pairs(store, "alice")


async def test_preferences_stage_lists_edits_and_deletes_pairs(workspace, tmp_path) -> None:
    add_persona(workspace, "alice")
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
                         for i in range(3)))
    assert cli.main(["import", str(f), "--persona", "alice", "--workspace", str(workspace.root)]) == 0
    with workspace.store() as store:
        from persona_studio.chat.tree import ChatTree

        tree = ChatTree(store)
        c = tree.create_chat(["alice"])
        tree.add(c.id, "user", "user", "hello")
        r = tree.add(c.id, "assistant", "alice", "meh")
        tree.edit(r.id, "hello there!")
    app = create_app(workspace.root)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("3")
        await wait_until(pilot, lambda: app.current_mode == "train")
        await pilot.press("p")
        await wait_until(pilot, lambda: bool(app.screen.query("#prefs-table")))
        table = app.screen.query_one("#prefs-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 4)
        counts = str(app.screen.query_one("#prefs-counts").render())
        assert "4 pair(s)" in counts and "chat edit 1" in counts and "import dpo 3" in counts
        detail = str(app.screen.query_one("#prefs-detail").render())
        assert "question 0" in detail and "good 0" in detail and "bad 0" in detail

        app.screen.query_one("#prefs-source", Select).value = "chat_edit"  # filter by source
        await wait_until(pilot, lambda: table.row_count == 1)
        assert "hello there!" in str(app.screen.query_one("#prefs-detail").render())
        app.screen.query_one("#prefs-source", Select).value = ""
        await wait_until(pilot, lambda: table.row_count == 4)

        table.focus()
        table.move_cursor(row=1)
        await pilot.press("e")
        await wait_until(pilot, lambda: bool(app.screen.query("#pair-chosen")))
        app.screen.query_one("#pair-chosen", TextArea).text = "much better 1"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: _pairs(workspace)[1].chosen == "much better 1")
        assert _pairs(workspace)[1].rejected == "bad 1"

        table = app.screen.query_one("#prefs-table", DataTable)
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("d")
        await wait_until(pilot, lambda: len(_pairs(workspace)) == 3)
        assert [p.chosen for p in _pairs(workspace)][0] == "much better 1"
        await wait_until(pilot, lambda: table.row_count == 3)
        await pilot.press("escape")
        await wait_until(pilot, lambda: bool(app.screen.query("#train-jobs")))


async def test_train_stage_names_the_pairs_a_preference_run_used(workspace, tiny_model) -> None:
    from persona_studio.settings import TrainPrefArgs, TrainSftArgs
    from persona_studio.train import jobs, spec

    add_persona(workspace, "alice")
    job_dir = workspace.jobs_dir / "20260101-000000-alice"
    job_dir.mkdir(parents=True)
    s = spec.TrainSpec("20260101-000000-alice", "alice", str(workspace.root), str(tiny_model), False, "cpu", 0,
                       "float32", TrainSftArgs(), method="dpo", pref=TrainPrefArgs(), sft_adapter="/x/v0001",
                       n_pairs=5, pair_sources={"chat_edit": 3, "swipe": 2}, created_at=jobs.now_iso())
    spec.save(s, job_dir / "spec.json")
    jobs.write_status(job_dir, job_id=s.job_id, persona_id="alice", state="done", pid=None, created_at=s.created_at,
                      step=2, total_steps=2)
    (job_dir / "metrics.jsonl").write_text("".join(json.dumps(
        {"step": i, "total_steps": 2, "loss": 0.69 - 0.2 * i, "eval_loss": None, "reward_margin": 0.5 * i,
         "accuracy": 1.0, "tokens_per_s": 100.0, "eta": 0}) + "\n" for i in (1, 2)))
    app = create_app(workspace.root)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("3")
        await wait_until(pilot, lambda: "5 pairs" in str(app.screen.query_one("#train-stats").render()))
        stats = str(app.screen.query_one("#train-stats").render())
        assert "5 pairs (chat edit 3, swipe 2)" in stats and "margin 1.000" in stats
