from __future__ import annotations

import json
import subprocess
import sys

import pytest

from persona_studio import review
from persona_studio.review import ReviewError


def add_sample(store, persona: str, h: str, reply: str, score: float | None = None, status: str = "pending") -> int:
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": reply}]
    with store.tx() as db:
        cur = db.execute(
            "INSERT INTO samples(persona_id, hash, turns, n_turns, status) VALUES (?, ?, ?, 2, ?)",
            (persona, h, json.dumps(turns), status),
        )
        if score is not None:
            db.execute("INSERT INTO scores(sample_id, judge, score) VALUES (?, 'test', ?)", (cur.lastrowid, score))
    return cur.lastrowid


@pytest.fixture
def store(workspace):
    s = workspace.store()
    yield s
    s.close()


def test_accept_reject_and_undo_in_order(store) -> None:
    a, b = add_sample(store, "p", "a", "one"), add_sample(store, "p", "b", "two")
    assert review.set_status(store, [a], "accepted") == 1
    assert review.set_status(store, [a], "accepted") == 0  # no-op is not recorded
    review.set_status(store, [b], "rejected")
    assert review.counts(store, "p") == {"pending": 0, "accepted": 1, "rejected": 1}
    assert review.undo(store, "p")["sample_id"] == b
    assert review.get_sample(store, b).status == "pending"
    assert review.undo(store, "p")["sample_id"] == a
    assert review.undo(store, "p") is None
    assert review.counts(store, "p")["pending"] == 2


def test_edit_keeps_hash_and_can_be_undone(store) -> None:
    a = add_sample(store, "p", "a", "original")
    new = review.text_to_turns("user: hi\n\nassistant: edited\nsecond line")
    review.edit_sample(store, a, new)
    s = review.get_sample(store, a)
    assert s.turns[1]["content"] == "edited\nsecond line" and s.edited
    assert store.query("SELECT hash FROM samples WHERE id=?", (a,))[0][0] == "a"
    review.undo(store, "p")
    s = review.get_sample(store, a)
    assert s.turns[1]["content"] == "original" and not s.edited


@pytest.mark.parametrize(
    ("text", "msg"),
    [("hello there", "start with 'user:'"), ("user: only the user", "at least one assistant turn"),
     ("user: hi\nassistant:   ", "turn 2: empty text"), ("", "at least one turn")],
)
def test_bad_edits_are_refused_and_change_nothing(store, text: str, msg: str) -> None:
    a = add_sample(store, "p", "a", "original")
    with pytest.raises(ReviewError, match=msg):
        review.edit_sample(store, a, review.text_to_turns(text))
    assert review.get_sample(store, a).turns[1]["content"] == "original"
    assert store.query("SELECT count(*) FROM edits")[0][0] == 0


def test_histogram_and_blocked_summary(store) -> None:
    for i, sc in enumerate([1, 2, 2, 5, None]):
        add_sample(store, "p", f"h{i}", f"r{i}", sc)
    add_sample(store, "other", "x", "r", 5)
    assert review.score_histogram(store, "p") == {"1": 1, "2": 2, "3": 0, "4": 0, "5": 1, "unscored": 1}
    with store.tx() as db:
        db.execute("INSERT INTO dataset_runs(id, persona_id) VALUES (1, 'p'), (2, 'p')")
        db.executemany("INSERT INTO blocked_hits(persona_id, run_id, word, text) VALUES ('p', ?, ?, ?)",
                       [(1, "old", "x"), (2, "darn", "oh darn"), (2, "darn", "darn it"), (2, "password", "pw?")])
    assert review.blocked_summary(store, "p") == [("darn", 2), ("password", 1)]
    assert [h["text"] for h in review.blocked_hits(store, "p", "darn")] == ["oh darn", "darn it"]


def test_review_cli(workspace) -> None:
    with workspace.store() as store:
        a = add_sample(store, "p", "a", "one", 4)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "persona_studio", "review", "--persona", "p",
                               "--workspace", str(workspace.root), *args], capture_output=True, text=True)

    r = cli("--json", "reject", str(a))
    assert r.returncode == 0, r.stderr
    info = json.loads(cli("--json").stdout)
    assert info["counts"]["rejected"] == 1 and info["scores"]["4"] == 1
    assert "undid reject" in cli("undo").stdout
    r = cli("accept", "999")
    assert r.returncode == 2 and "sample 999: no such sample" in r.stderr
