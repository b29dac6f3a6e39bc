from __future__ import annotations

from textual.widgets import DataTable, TextArea

from persona_studio import review
from persona_studio.tui.app import create_app
from tests.test_review import add_sample
from tests.tui_helpers import wait_until


async def test_review_keys_accept_reject_edit_undo(workspace) -> None:
    with workspace.store() as store:
        ids = [add_sample(store, "alice", f"h{i}", f"reply {i}", score=i + 1) for i in range(3)]
        with store.tx() as db:
            db.execute("INSERT INTO dataset_runs(id, persona_id) VALUES (1, 'alice')")
            db.execute("INSERT INTO blocked_hits(persona_id, run_id, word, text) VALUES ('alice', 1, 'darn', 'oh darn')")
    app = create_app(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await wait_until(pilot, lambda: app.current_mode == "review")
        table = app.screen.query_one("#review-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 3)
        table.focus()
        await pilot.press("a")  # accept first, cursor moves on
        await pilot.press("x")  # reject second
        await pilot.pause()
        with workspace.store() as store:
            assert [review.get_sample(store, i).status for i in ids] == ["accepted", "rejected", "pending"]
        await pilot.press("u")
        await pilot.pause()
        with workspace.store() as store:
            assert review.get_sample(store, ids[1]).status == "pending"
        # edit the highlighted sample in the modal editor
        table.move_cursor(row=2)
        await pilot.press("e")
        await wait_until(pilot, lambda: bool(app.screen.query(TextArea)))
        area = app.screen.query_one(TextArea)
        area.text = "user: hi\nassistant: a better reply"
        await pilot.press("ctrl+s")
        await pilot.pause()
        with workspace.store() as store:
            assert review.get_sample(store, ids[2]).turns[1]["content"] == "a better reply"
        # histogram and blocked words are rendered
        hist = str(app.screen.query_one("#review-hist").render())
        assert "accept_score = 2" in hist and "unscored" in hist
        words = app.screen.query_one("#blocked-words", DataTable)
        assert words.row_count == 1


async def test_edit_modal_rejects_bad_text_and_keeps_sample(workspace) -> None:
    with workspace.store() as store:
        sid = add_sample(store, "alice", "h", "original")
    app = create_app(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        table = app.screen.query_one("#review-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1)
        table.focus()
        await pilot.press("e")
        await wait_until(pilot, lambda: bool(app.screen.query(TextArea)))
        app.screen.query_one(TextArea).text = "user: only me"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "assistant turn" in str(app.screen.query_one("#edit-error").render())
        await pilot.press("escape")
        await pilot.pause()
        with workspace.store() as store:
            assert review.get_sample(store, sid).turns[1]["content"] == "original"
