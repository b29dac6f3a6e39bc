"""The Eval screen: reached by key 7 and the palette; starts a real eval (tiny model, transformers),
shows the table with the best values marked, the chart, the side-by-side viewer; cancel keeps nothing."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from persona_studio.eval import report
from persona_studio.tui.app import create_app
from tests.eval_helpers import SENT, sentence_workspace
from tests.tui_helpers import wait_until

pytestmark = pytest.mark.slow


def _status(app) -> str:
    return str(app.screen.query_one("#eval-status", Static).render())


async def test_eval_screen_runs_an_eval_and_shows_table_and_side_by_side(tmp_path, tiny_model, adapter_cache,
                                                                         monkeypatch):
    ws = sentence_workspace(tmp_path / "ws", tiny_model, adapter_cache)
    app = create_app(ws.root)
    async with app.run_test(size=(140, 44)) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Go to Eval" in titles
        await pilot.press("7")
        await wait_until(pilot, lambda: app.current_mode == "eval")
        await wait_until(pilot, lambda: "no eval run yet" in _status(app))
        await pilot.press("s")
        table = app.screen.query_one("#eval-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 2 or "red" in _status(app), timeout=240)
        assert table.row_count == 2, _status(app)
        first = [str(c) for c in table.get_row_at(0)]
        assert first[:2] == ["1", "v0001"]
        assert all(c.startswith("★") for c in first[2:]), first  # best on every metric
        assert not any(str(c).startswith("★") for c in table.get_row_at(1))
        assert "4 held-out conversations" in _status(app)
        cols = app.screen.query(".eval-col")
        assert [c.border_title for c in cols] == ["real", "v0001", "base"]
        replies = [str(s.render()) for s in app.screen.query(".eval-reply")]
        assert replies[0] == SENT and replies[1] == SENT and replies[2] != SENT
        title = app.screen.query_one("#eval-viewer-title", Static)
        assert "held-out 1/4" in str(title.render())
        await pilot.press("n")
        await wait_until(pilot, lambda: "held-out 2/4" in str(title.render()))
        await pilot.press("v")
        await wait_until(pilot, lambda: "probe 1/" in str(title.render()))
        await wait_until(pilot, lambda: [c.border_title for c in app.screen.query(".eval-col")] == ["v0001", "base"])
        done = report.latest(ws, "alice")["run_id"]

        # a second run, cancelled while it generates (held there until the cancel arrives, since
        # on a warm tiny model the whole run would otherwise end before the key is read)
        from persona_studio.eval import run as run_mod

        real = run_mod.generate_all

        def held(engine, reqs, progress=None, cancel=None):
            cancel.wait(60)
            return real(engine, reqs, progress, cancel)

        monkeypatch.setattr(run_mod, "generate_all", held)
        await pilot.press("s")
        await pilot.press("c")
        await wait_until(pilot, lambda: "cancelled" in _status(app), timeout=240)
        runs = report.runs(ws, "alice")
        assert [r["state"] for r in runs] == ["cancelled", "done"]
        assert report.latest(ws, "alice")["run_id"] == done
        assert table.row_count == 2
