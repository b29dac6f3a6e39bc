"""Preference pairs: from chat edits, swipes, review edits and DPO/KTO files, with source, context,
PII redaction; the prefs CLI; the v3 -> v4 migration of the old chat-edit rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from persona_studio import cli, review
from persona_studio.chat.tree import ChatTree
from persona_studio.prefs import store as prefs
from persona_studio.store import Store
from tests.train_helpers import add_persona, add_samples, chat


@pytest.fixture
def ws(workspace):
    add_persona(workspace, "alice")
    return workspace


def _cli(ws, *argv: str) -> int:
    return cli.main([*argv, "--workspace", str(ws.root)])


def _pairs(ws, **kw):
    with ws.store() as store:
        return prefs.list_pairs(store, "alice", **kw)


# -- chat ----------------------------------------------------------------------------------------
def test_chat_edit_is_one_pair_per_reply_original_against_latest(ws) -> None:
    with ws.store() as store:
        tree = ChatTree(store)
        c = tree.create_chat(["alice"])
        tree.add(c.id, "user", "user", "hi, call me at 13812345678")
        r = tree.add(c.id, "assistant", "alice", "model reply", meta={"name": "Alice"})
        tree.edit(r.id, "first fix")
        tree.edit(r.id, "second fix, mail me at a@b.com")
    (p,) = _pairs(ws)
    assert (p.source, p.rejected, p.chat_message_id) == ("chat_edit", "model reply", r.id)
    # the same PII rules as samples: the e-mail and the phone number in the context are redacted
    assert p.chosen == "second fix, mail me at <EMAIL>"
    assert p.prompt == [{"role": "user", "speaker": "user", "content": "hi, call me at <PHONE>"}]
    assert p.meta["pii"] == {"email": 1, "phone": 1}
    with ws.store() as store:
        ChatTree(store).edit(r.id, "model reply")  # edited back: no preference left
    assert _pairs(ws) == []


def test_swipe_kept_and_continued_from_is_chosen_over_the_others(ws) -> None:
    with ws.store() as store:
        tree = ChatTree(store)
        c = tree.create_chat(["alice"])
        tree.add(c.id, "user", "user", "how are you?")
        a = tree.add(c.id, "assistant", "alice", "swipe A")
        b = tree.add_swipe(a.id, "swipe B")
        s3 = tree.add_swipe(a.id, "swipe C")
        assert _pairs(ws) == []  # swiping alone says nothing yet
        tree.select(b.id)
        tree.add(c.id, "user", "user", "nice")  # the user goes on from B
    got = sorted((p.source, p.chosen, p.rejected, p.chat_message_id, p.rejected_message_id) for p in _pairs(ws))
    assert got == [("swipe", "swipe B", "swipe A", b.id, a.id), ("swipe", "swipe B", "swipe C", b.id, s3.id)]
    assert all(p.prompt == [{"role": "user", "speaker": "user", "content": "how are you?"}] for p in _pairs(ws))
    # Later the user goes back and continues from C instead: the latest choice wins, nothing contradicts.
    with ws.store() as store:
        tree = ChatTree(store)
        tree.select(s3.id)
        tree.add(c.id, "user", "user", "better")
    got = sorted((p.chosen, p.rejected) for p in _pairs(ws))
    assert got == [("swipe B", "swipe A"), ("swipe C", "swipe A"), ("swipe C", "swipe B")]


def test_party_context_names_the_other_speakers(ws) -> None:
    add_persona(ws, "bob", "Bob")
    with ws.store() as store:
        tree = ChatTree(store)
        c = tree.create_chat(["alice", "bob"], kind="party")
        tree.add(c.id, "user", "user", "hello all")
        tree.add(c.id, "assistant", "bob", "Bob here", meta={"name": "Bob"})
        tree.add(c.id, "assistant", "alice", "I was here first", meta={"name": "Alice"})
        r = tree.add(c.id, "assistant", "alice", "orig", meta={"name": "Alice"})
        tree.edit(r.id, "better")
    (p,) = _pairs(ws)
    assert [(t["role"], t["content"]) for t in p.prompt] == [
        ("user", "User: hello all\nBob: Bob here"), ("assistant", "I was here first")]


# -- review --------------------------------------------------------------------------------------
def test_review_edit_of_a_persona_turn_is_a_pair_and_undo_removes_it(ws) -> None:
    add_samples(ws, "alice", [chat("q1", "a1") + chat("q2", "a2")])
    with ws.store() as store:
        (s,) = review.list_samples(store, "alice")
        turns = [dict(t) for t in s.turns]
        turns[3]["content"] = "a2 but better"
        turns[0]["content"] = "q1 edited"  # user turns are context, never a pair
        review.edit_sample(store, s.id, turns)
        turns[3]["content"] = "a2, best"
        review.edit_sample(store, s.id, turns)
    (p,) = _pairs(ws)
    assert (p.source, p.sample_id, p.turn, p.chosen, p.rejected) == ("review_edit", s.id, 3, "a2, best", "a2")
    assert p.prompt == [{"role": "user", "content": "q1 edited"}, {"role": "assistant", "content": "a1"},
                        {"role": "user", "content": "q2"}]
    with ws.store() as store:
        review.undo(store, "alice")
    assert [p.chosen for p in _pairs(ws)] == ["a2 but better"]
    with ws.store() as store:
        review.undo(store, "alice")
    assert _pairs(ws) == []


# -- imports -------------------------------------------------------------------------------------
def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_dpo_files_in_trl_and_llamafactory_shapes_import_as_pairs(ws, tmp_path: Path, capsys) -> None:
    trl = _write(tmp_path / "trl.jsonl", [
        {"prompt": [{"role": "system", "content": "Be Alice."}, {"role": "user", "content": "tea?"}],
         "chosen": [{"role": "assistant", "content": "Yes please!"}],
         "rejected": [{"role": "assistant", "content": "No."}]},
        {"prompt": "plain prompt", "chosen": "good", "rejected": "bad"},
        {"chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "implicit good"}],
         "rejected": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "implicit bad"}]},
        {"prompt": "same", "chosen": "same text", "rejected": "same text"},
    ])
    lf = tmp_path / "lf.json"
    lf.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "hello"}], "system": "sys",
         "chosen": {"from": "gpt", "value": "hi there, mail me: x@y.org"}, "rejected": {"from": "gpt", "value": "go away"}},
        {"instruction": "Greet", "input": "politely", "chosen": "Good day!", "rejected": "Yo."},
    ]), encoding="utf-8")
    assert _cli(ws, "import", str(trl), str(lf), "--persona", "alice", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert [(f["format"], f["pairs"], f["bad"]) for f in summary["files"]] == [("dpo", 3, 1), ("dpo", 2, 0)]
    got = [(p.source, p.system, [(t["role"], t["content"]) for t in p.prompt], p.chosen, p.rejected)
           for p in _pairs(ws)]
    assert got == [
        ("import_dpo", "Be Alice.", [("user", "tea?")], "Yes please!", "No."),
        ("import_dpo", "", [("user", "plain prompt")], "good", "bad"),
        ("import_dpo", "", [("user", "x")], "implicit good", "implicit bad"),
        ("import_dpo", "sys", [("user", "hello")], "hi there, mail me: <EMAIL>", "go away"),
        ("import_dpo", "", [("user", "Greet\npolitely")], "Good day!", "Yo."),
    ]
    assert all(p.import_id for p in _pairs(ws))
    with ws.store() as store:  # no messages: a preference file is not a chat log
        assert store.query("SELECT count(*) FROM message_blocks")[0][0] == 0
    # The same file again is a no-op, as for chat exports.
    assert _cli(ws, "import", str(trl), "--persona", "alice") == 0
    assert len(_pairs(ws)) == 5


def test_kto_rows_pair_up_under_their_prompt(ws, tmp_path: Path, capsys) -> None:
    kto = _write(tmp_path / "kto.jsonl", [
        {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "good 1"}],
         "label": True},
        {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "bad 1"}],
         "label": False},
        {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "good 2"}],
         "label": True},
        {"messages": [{"role": "user", "content": "lonely"}, {"role": "assistant", "content": "only good"}],
         "label": True},
        {"prompt": "q", "completion": "no label"},
    ])
    assert _cli(ws, "import", str(kto), "--persona", "alice", "--json") == 0
    (f,) = json.loads(capsys.readouterr().out)["files"]
    assert (f["format"], f["pairs"], f["kto_unpaired"], f["bad"]) == ("kto", 2, 1, 1)
    got = sorted((p.source, p.prompt[0]["content"], p.chosen, p.rejected) for p in _pairs(ws))
    assert got == [("import_kto", "q", "good 1", "bad 1"), ("import_kto", "q", "good 2", "bad 1")]


def test_a_preference_file_without_one_usable_pair_is_refused(ws, tmp_path: Path, capsys) -> None:
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": 3, "rejected": "r"}])
    assert _cli(ws, "import", str(bad), "--persona", "alice") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.jsonl:1" in err and "chosen" in err
    with ws.store() as store:
        assert store.query("SELECT count(*) FROM imports")[0][0] == 0


# -- CLI -----------------------------------------------------------------------------------------
def test_prefs_cli_lists_shows_edits_and_deletes(ws, tmp_path: Path, capsys) -> None:
    f = _write(tmp_path / "d.jsonl", [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(3)])
    assert _cli(ws, "import", str(f), "--persona", "alice") == 0
    capsys.readouterr()
    assert _cli(ws, "prefs", "list", "--persona", "alice", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(p["chosen"], p["source"]) for p in listed["pairs"]] == [("c0", "import_dpo"), ("c1", "import_dpo"),
                                                                     ("c2", "import_dpo")]
    assert listed["counts"]["import_dpo"] == 3 and listed["counts"]["chat_edit"] == 0
    ids = [p["id"] for p in listed["pairs"]]
    assert _cli(ws, "prefs", "show", str(ids[0])) == 0
    out = capsys.readouterr().out
    assert "p0" in out and "c0" in out and "r0" in out
    assert _cli(ws, "prefs", "edit", str(ids[1]), "--chosen", "c1 better, see https://x.io/a") == 0
    assert _pairs(ws)[1].chosen == "c1 better, see <URL>"
    assert _cli(ws, "prefs", "delete", str(ids[0]), "99999") == 2  # one unknown id: nothing deleted
    assert "99999" in capsys.readouterr().err
    assert len(_pairs(ws)) == 3
    assert _cli(ws, "prefs", "delete", str(ids[0]), str(ids[2])) == 0
    assert [p.chosen for p in _pairs(ws)] == ["c1 better, see <URL>"]
    assert _cli(ws, "prefs", "list", "--persona", "nobody") == 2


def test_export_prefs_in_trl_and_llamafactory_formats(ws, tmp_path: Path, capsys) -> None:
    f = _write(tmp_path / "d.jsonl", [
        {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "u1"},
                    {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}],
         "chosen": "good", "rejected": "bad"}])
    assert _cli(ws, "import", str(f), "--persona", "alice") == 0
    out_trl, out_lf = tmp_path / "trl.jsonl", tmp_path / "lf.json"
    assert _cli(ws, "export", "prefs", "--persona", "alice", "--format", "trl", "-o", str(out_trl)) == 0
    assert _cli(ws, "export", "prefs", "--persona", "alice", "--format", "llamafactory", "-o", str(out_lf)) == 0
    (trl,) = [json.loads(line) for line in out_trl.read_text().splitlines()]
    assert trl == {
        "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "u1"},
                   {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}],
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }
    (lf,) = json.loads(out_lf.read_text())
    assert lf == {"conversations": [{"from": "human", "value": "u1"}, {"from": "gpt", "value": "a1"},
                                    {"from": "human", "value": "u2"}],
                  "system": "S", "chosen": {"from": "gpt", "value": "good"}, "rejected": {"from": "gpt", "value": "bad"}}
    # The exported files import back as the same pairs (our own reader accepts both shapes).
    from persona_studio.ingest.common import ReadStats
    from persona_studio.prefs.imports import read_pairs

    for path in (out_trl, out_lf):
        pairs, _ = read_pairs(path, "dpo", "utf-8", ReadStats())
        assert [(p["system"], p["chosen"], p["rejected"], len(p["prompt"])) for p in pairs] == [("S", "good", "bad", 3)]


# -- migration -----------------------------------------------------------------------------------
def test_v3_chat_edit_rows_migrate_to_one_pair_per_reply(tmp_path: Path) -> None:
    from persona_studio.store import _statements, schema

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for step in schema.MIGRATIONS[:3]:  # build a v3 database as the previous release did
        db.execute("BEGIN")
        if callable(step):
            step(db)
        else:
            for stmt in _statements(step):
                db.execute(stmt)
        db.execute("COMMIT")
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO chats (id, personas) VALUES (1, '[\"alice\"]')")
    db.execute("INSERT INTO chat_messages (id, chat_id, role, speaker, content) VALUES (7, 1, 'assistant', 'alice', 'v2')")
    for rejected, chosen in (("orig", "v1"), ("v1", "v2")):  # the same reply edited twice
        db.execute("INSERT INTO preferences (persona_id, prompt, rejected, chosen, chat_message_id)"
                   " VALUES ('alice', '[]', ?, ?, 7)", (rejected, chosen))
    db.close()
    with Store.open(path) as store:
        (p,) = prefs.list_pairs(store)
    assert (p.source, p.rejected, p.chosen, p.chat_message_id) == ("chat_edit", "orig", "v2", 7)
