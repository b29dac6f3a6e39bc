"""Starting with your own data and taking an import back: `persona new`, `import --create`,
an import that stores nothing is a failure, `import --list` and `import --undo ID`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from persona_studio.cli import main
from persona_studio.persona.card import load_persona
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import HEADER, add_persona, wechat_csv


def cli(ws: Workspace, *argv: str) -> int:
    return main([*argv, "-w", str(ws.root)])


def dump(ws: Workspace) -> list[str]:
    if not ws.db_path.exists():
        return []
    conn = sqlite3.connect(ws.db_path)
    try:
        return [x for x in conn.iterdump() if "INSERT INTO" in x]
    finally:
        conn.close()


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_persona_new_writes_a_commented_skeleton(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(workspace, "persona", "new", "ada", "--name", "Ada Lovelace") == 0
    path = workspace.personas_dir / "ada" / "persona.jsonc"
    text = path.read_text(encoding="utf-8")
    assert text.count("//") >= 8 and '"name": "Ada Lovelace"' in text
    p = load_persona(workspace, "ada")
    assert (p.name, p.description, p.talkativeness) == ("Ada Lovelace", "", 0.5)
    assert "ada" in workspace.persona_ids()
    capsys.readouterr()
    assert cli(workspace, "persona", "new", "ada") == 2
    assert "already exists" in one_line_error(capsys)
    assert path.read_text(encoding="utf-8") == text
    assert cli(workspace, "persona", "new", "Bad Id") == 2
    assert "bad persona id 'Bad Id'" in one_line_error(capsys)
    assert cli(workspace, "persona", "new", "bo", "--json") == 0
    assert load_persona(workspace, "bo").name == "bo"
    assert json.loads(capsys.readouterr().out)["id"] == "bo"


CHAT = [
    ("文本", 0, "Bob", "are you free tonight?", "2024-10-04 11:00:00"),
    ("文本", 1, "Bob", "yes, dinner?", "2024-10-04 11:01:00"),
    ("文本", 0, "Bob", "the noodle place", "2024-10-04 11:02:00"),
    ("文本", 1, "Bob", "see you at 7", "2024-10-04 11:03:00"),
]


def test_import_create_makes_the_persona_named_after_me(workspace: Workspace, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    f = wechat_csv(tmp_path / "c.csv", CHAT)
    assert cli(workspace, "import", str(f), "--persona", "me-too", "--me", "me") == 2
    err = one_line_error(capsys)
    assert "unknown persona 'me-too'" in err and "persona new me-too" in err
    # a failed import with --create leaves no persona behind
    assert cli(workspace, "import", str(f), "--persona", "ghost", "--me", "nobody", "--create") == 2
    assert "not a speaker" in one_line_error(capsys)
    assert not (workspace.personas_dir / "ghost").exists()
    assert cli(workspace, "import", str(f), "--persona", "me-too", "--me", "me", "--create", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stored"] == 4 and out["me_messages"] == 2 and out["created_persona"].endswith("persona.jsonc")
    assert load_persona(workspace, "me-too").name == "me"
    # an existing persona is used as it is
    g = wechat_csv(tmp_path / "g.csv", [(k, s, t, m + "!", d.replace("10-04", "10-05")) for k, s, t, m, d in CHAT])
    assert cli(workspace, "import", str(g), "--persona", "me-too", "--me", "Bob", "--create") == 0
    assert "created persona" not in capsys.readouterr().out
    assert load_persona(workspace, "me-too").name == "me"


def test_an_import_that_stores_nothing_fails(workspace: Workspace, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    add_persona(workspace, "p")
    good = wechat_csv(tmp_path / "good.csv", CHAT)
    assert cli(workspace, "import", str(good), "--persona", "p", "--me", "me") == 0
    capsys.readouterr()
    before = dump(workspace)
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "1,1,文本,0,Bob,,hi,,yesterday\n2,2,文本,0,Bob,,yo,,not a time\n", encoding="utf-8")
    assert cli(workspace, "import", str(bad), "--persona", "p", "--me", "me") == 2
    err = one_line_error(capsys)
    assert f"no messages imported from {bad}: first problem: {bad}:2: bad CreateTime 'yesterday'" in err
    assert "(and 1 more bad records)" in err
    tools = tmp_path / "tools.jsonl"
    tools.write_text(json.dumps({"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "1", "type": "function",
                                                             "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."}]}) + "\n", encoding="utf-8")
    assert cli(workspace, "import", str(tools), "--persona", "p") == 2
    assert "every record was skipped (tool_calls 1)" in one_line_error(capsys)
    assert dump(workspace) == before


def samples(ws: Workspace) -> dict[str, str]:
    """first user turn of each sample -> its status"""
    with ws.store() as store:
        rows = store.query("SELECT turns, status FROM samples WHERE persona_id = 'p'")
    return {json.loads(t)[0]["content"]: s for t, s in rows}


def test_undo_removes_the_import_and_the_samples_only_it_made(workspace: Workspace, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    add_persona(workspace, "p")
    shared = [("文本", 0, "Bob", "shared question", "2024-10-01 10:00:00"),
              ("文本", 1, "Bob", "shared answer", "2024-10-01 10:01:00")]
    only_a = [("文本", 0, "Bob", "question only in A", "2024-10-02 10:00:00"),
              ("文本", 1, "Bob", "answer only in A", "2024-10-02 10:01:00")]
    only_b = [("文本", 0, "Bob", "question only in B", "2024-10-03 10:00:00"),
              ("文本", 1, "Bob", "answer only in B", "2024-10-03 10:01:00")]
    a = wechat_csv(tmp_path / "a.csv", shared + only_a)
    b = wechat_csv(tmp_path / "b.csv", shared + only_b)
    for f in (a, b):
        assert cli(workspace, "import", str(f), "--persona", "p", "--me", "me", "--json") == 0
    ids = [f["import_id"] for line in capsys.readouterr().out.splitlines() for f in json.loads(line)["files"]]
    assert cli(workspace, "make-dataset", "--persona", "p") == 0
    capsys.readouterr()
    assert set(samples(workspace)) == {"shared question", "question only in A", "question only in B"}
    with workspace.store() as store, store.tx() as db:  # a review decision that must survive
        db.execute("UPDATE samples SET status = 'accepted' WHERE turns LIKE '%shared question%'")
        # reviewed work on a sample only A made goes with A (make-dataset alone would refuse to drop it)
        db.execute("UPDATE samples SET status = 'rejected' WHERE turns LIKE '%only in A%'")
    assert cli(workspace, "import", "--list", "--persona", "p", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["messages"]) for r in listed] == [(ids[1], 4), (ids[0], 4)]

    assert cli(workspace, "import", "--undo", str(ids[0]), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["messages_removed"], out["samples_removed"], out["samples_left"]) == (4, 1, 2)
    assert samples(workspace) == {"shared question": "accepted", "question only in B": "pending"}
    assert cli(workspace, "import", "--list", "--json") == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [ids[1]]
    # the same file can be imported again afterwards
    assert cli(workspace, "import", str(a), "--persona", "p", "--me", "me") == 0
    capsys.readouterr()

    before = dump(workspace)
    assert cli(workspace, "import", "--undo", "999") == 2
    assert "no import with id 999" in one_line_error(capsys)
    assert cli(workspace, "import", "--persona", "p") == 2
    assert "give FILE" in one_line_error(capsys)
    assert dump(workspace) == before


def test_undo_before_any_dataset_run_only_removes_messages(workspace: Workspace, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    add_persona(workspace, "p")
    assert cli(workspace, "import", str(wechat_csv(tmp_path / "a.csv", CHAT)), "--persona", "p", "--me", "me") == 0
    assert cli(workspace, "import", "--undo", "1") == 0
    assert "4 messages and 0 samples removed" in capsys.readouterr().out
    assert not [x for x in dump(workspace) if '"imports"' in x or '"message_blocks"' in x]


def test_persona_follows_the_files_folder(workspace: Workspace, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    add_persona(workspace, "p")
    add_persona(workspace, "q")
    (workspace.personas_dir / "q" / "chats").mkdir()
    inside = wechat_csv(workspace.personas_dir / "q" / "chats" / "c.csv", CHAT)
    assert cli(workspace, "import", str(inside), "--me", "me", "--json") == 0
    assert json.loads(capsys.readouterr().out)["persona"] == "q"
    outside = wechat_csv(tmp_path / "o.csv", CHAT)
    before = dump(workspace)
    assert cli(workspace, "import", str(outside), "--me", "me") == 2
    assert "which persona?" in one_line_error(capsys)
    assert dump(workspace) == before


def test_me_hints_name_people_not_notices(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    add_persona(workspace, "p")
    chat = Path(__file__).parent / "data" / "ingest" / "whatsapp_locales" / "de.txt"
    assert cli(workspace, "import", str(chat), "--persona", "p") == 2
    err = one_line_error(capsys)
    assert err.rstrip().endswith("speakers: Ben (4), Anna (3)")


def test_suggested_me_is_the_last_imports_else_the_speaker_named_like_the_persona(
        workspace: Workspace, tmp_path: Path) -> None:
    from persona_studio.importlog import suggest_me
    from persona_studio.persona.card import Persona, save_persona

    save_persona(workspace, Persona(id="rosa-diaz", name="Detective Rosa", description="d"))
    assert suggest_me(workspace, "rosa-diaz", ["Jake", "Rosa Diaz"]) == ("Rosa Diaz", "named like persona rosa-diaz")
    assert suggest_me(workspace, "rosa-diaz", ["Jake", "detective rosa!"])[0] == "detective rosa!"  # the card's name
    assert suggest_me(workspace, "rosa-diaz", ["Jake", "Amy"]) is None
    assert suggest_me(workspace, "rosa-diaz", ["Rosa Diaz", "rosa  diaz"]) is None  # two alike: no guess
    chat = tmp_path / "chat.txt"
    chat.write_text("12/31/23, 9:41 PM - Rosa Diaz: hi\n12/31/23, 9:42 PM - R.D.: typing from my phone\n"
                    "12/31/23, 9:43 PM - Rosa Diaz: ok\n", encoding="utf-8")
    assert cli(workspace, "import", str(chat), "--persona", "rosa-diaz", "--me", "R.D.") == 0
    # the account used last time wins over a name match
    assert suggest_me(workspace, "rosa-diaz", ["Rosa Diaz", "R.D."]) == ("R.D.", '"me" of import 1')
