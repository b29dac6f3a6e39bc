"""Nothing lost, nothing crossed (issue 10, points 8 and 9): re-running make-dataset with settings
that re-split conversations carries accept/reject and edits over to the re-made samples, or
refuses (naming what would be lost) unless --force; an open Review screen whose sample vanished
says so; `review --persona X` acts only on X's samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persona_studio import review
from persona_studio.cli import main
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import add_persona, wechat_csv
from tests.test_data_cli import dump


def exchange(day: int, minute: int, n: int, tag: str) -> list[tuple[str, int, str, str, str]]:
    """`n` question/answer pairs, 3 minutes apart, starting at 2024-10-`day` 10:`minute`."""
    rows = []
    for i in range(n):
        m = minute + 3 * i
        rows.append(("文本", 0, "bob", f"{tag} question {i}", f"2024-10-{day:02d} 10:{m:02d}:00"))
        rows.append(("文本", 1, "bob", f"{tag} answer {i}", f"2024-10-{day:02d} 10:{m:02d}:30"))
    return rows


def settings(ws: Workspace, window: float) -> None:
    ws.settings_path.write_text(json.dumps({"make_dataset": {"qa_match_time_window": window}}))


def cli(ws: Workspace, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["-w", str(ws.root), *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def samples(ws: Workspace, persona: str = "alice") -> list[review.Sample]:
    with ws.store() as store:
        return review.list_samples(store, persona)


def by_question(items: list[review.Sample]) -> dict[str, review.Sample]:
    """Samples by their first question (answers may be edited)."""
    return {s.turns[0]["content"]: s for s in items}


@pytest.fixture
def ws(workspace: Workspace, tmp_path: Path) -> Workspace:
    add_persona(workspace, "alice")
    # Three conversations on three days; "d" starts 8 minutes after "a" ends, on day 1.
    rows = exchange(1, 0, 3, "a") + exchange(1, 14, 2, "d") + exchange(2, 0, 3, "b") + exchange(3, 0, 3, "c")
    assert main(["import", str(wechat_csv(tmp_path / "chat.csv", rows)), "--persona", "alice", "--me", "me",
                 "-w", str(workspace.root)]) == 0
    settings(workspace, 5.0)
    assert main(["make-dataset", "--persona", "alice", "-w", str(workspace.root)]) == 0
    return workspace


def test_resplit_carries_status_and_edits_to_remade_samples(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    first = by_question(samples(ws))
    assert set(first) == {"a question 0", "d question 0", "b question 0", "c question 0"}
    assert len(first["a question 0"].turns) == 6
    assert cli(ws, capsys, "review", "--persona", "alice", "accept", str(first["a question 0"].id))[0] == 0
    assert cli(ws, capsys, "review", "--persona", "alice", "reject", str(first["b question 0"].id))[0] == 0
    c = first["c question 0"]
    edited = [dict(t) for t in c.turns]
    edited[3]["content"] = "c answer 1, said better"  # the second answer
    with ws.store() as store:
        review.edit_sample(store, c.id, edited)

    settings(ws, 0.75)  # now every question/answer pair is its own sample
    rc, out, err = cli(ws, capsys, "make-dataset", "--persona", "alice", "--json")
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["samples"]["removed_stale"] == 4
    assert summary["review"] == {"carried_status": 6, "carried_edits": 1, "dropped": 0}
    now = by_question(samples(ws))
    assert len(now) == 11 and all(len(s.turns) == 2 for s in now.values())
    for i in range(3):
        assert now[f"a question {i}"].status == "accepted"
        assert now[f"b question {i}"].status == "rejected"
        assert now[f"c question {i}"].status == "pending"
    assert now["d question 0"].status == "pending"
    carried = now["c question 1"]
    assert carried.turns[1]["content"] == "c answer 1, said better" and carried.edited
    assert not now["c question 0"].edited
    # The carried edit is a review edit like any other: undo brings the made text back.
    assert cli(ws, capsys, "review", "--persona", "alice", "undo")[0] == 0
    assert by_question(samples(ws))["c question 1"].turns[1]["content"] == "c answer 1"


def test_work_that_cannot_be_carried_is_refused_until_force(ws: Workspace,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    first = by_question(samples(ws))
    accepted = first["a question 0"].id
    assert cli(ws, capsys, "review", "--persona", "alice", "accept", str(accepted))[0] == 0
    settings(ws, 10.0)  # "a" (accepted) and "d" (never reviewed) become one sample
    before = dump(ws)
    rc, out, err = cli(ws, capsys, "make-dataset", "--persona", "alice")
    assert rc == 2 and out == ""
    assert err.strip() == (
        "persona-studio: error: make-dataset for 'alice' would drop the review work on 1 sample(s) the current "
        f"settings no longer make (1 accepted; sample ids {accepted}) and that could not be matched to new "
        "samples; nothing was changed: restore the settings, or re-run with --force to drop it")
    assert dump(ws) == before
    rc, out, err = cli(ws, capsys, "make-dataset", "--persona", "alice", "--force")
    assert rc == 0, err
    assert "dropped (--force): 1 samples" in out
    merged = by_question(samples(ws))["a question 0"]
    assert len(merged.turns) == 10 and merged.status == "pending"


async def test_open_review_screen_whose_sample_was_remade_shows_a_message(ws: Workspace) -> None:
    from textual.widgets import DataTable

    from persona_studio.clean.pipeline import make_dataset
    from persona_studio.tui.app import create_app
    from tests.tui_helpers import wait_until

    app = create_app(ws.root)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        await wait_until(pilot, lambda: app.current_mode == "review")
        table = app.screen.query_one("#review-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 4)
        table.focus()
        # Another terminal re-makes the samples under the open screen.
        settings(ws, 0.75)
        make_dataset(type(ws).open(ws.root), "alice")
        await pilot.press("a")
        await wait_until(pilot, lambda: table.row_count == 11)  # reloaded with what is there now
        notes = [str(n.message) for n in app._notifications]
        assert any("no such sample" in n and "reloaded" in n for n in notes), notes
        await pilot.press("a")  # the screen still works: the highlighted (new) sample is accepted
        await pilot.pause()
    assert sum(s.status == "accepted" for s in samples(ws)) == 1


def test_review_acts_only_on_the_named_personas_samples(ws: Workspace, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    add_persona(ws, "bob")
    rows = exchange(5, 0, 2, "bob")
    assert main(["import", str(wechat_csv(tmp_path / "bob.csv", rows)), "--persona", "bob", "--me", "me",
                 "-w", str(ws.root)]) == 0
    assert main(["make-dataset", "--persona", "bob", "-w", str(ws.root)]) == 0
    alice_ids = [s.id for s in samples(ws, "alice")]
    (bob_sample,) = samples(ws, "bob")
    before = dump(ws)
    for action in ("accept", "reject", "reset"):
        rc, _, err = cli(ws, capsys, "review", "--persona", "bob", action, str(bob_sample.id), str(alice_ids[0]))
        assert rc == 2
        assert err.strip() == (f"persona-studio: error: sample {alice_ids[0]}: not a sample of persona 'bob' "
                               "(nothing changed)")
        assert dump(ws) == before  # not even bob's own sample, listed first, changed
    rc, _, err = cli(ws, capsys, "review", "--persona", "bobb", "accept", str(bob_sample.id))
    assert rc == 2 and "unknown persona 'bobb'" in err
    assert cli(ws, capsys, "review", "--persona", "bob", "accept", str(bob_sample.id))[0] == 0
    assert [s.status for s in samples(ws, "bob")] == ["accepted"]
    assert all(s.status == "pending" for s in samples(ws, "alice"))
    # undo is per persona too: alice has nothing to undo, bob's accept stays until bob undoes it.
    assert cli(ws, capsys, "review", "--persona", "alice", "undo")[1].strip() == "nothing to undo"
    assert [s.status for s in samples(ws, "bob")] == ["accepted"]
