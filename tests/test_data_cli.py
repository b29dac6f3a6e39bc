"""The headless data commands end to end: import, speakers, make-dataset, export dataset, bad input."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from persona_studio.cli import main
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import CHAT, add_persona, wechat_csv

GROUP = [
    ("文本", 0, "Alice Zhang", "大家好", "2024-10-04 11:00:00"),
    ("文本", 0, "Carol", "hi", "2024-10-04 11:00:30"),
    ("文本", 1, "room", "hello both", "2024-10-04 11:01:00"),
    ("文本", 0, "Carol", "ok", "2024-10-04 11:02:00"),
]


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    add_persona(workspace, "alice")
    return workspace


def cli(ws: Workspace, *argv: str) -> int:
    return main([*argv, "-w", str(ws.root)])


def dump(ws: Workspace) -> list[str]:
    if not ws.db_path.exists():
        return []
    conn = sqlite3.connect(ws.db_path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def out_json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out)


def test_import_make_export_roundtrip(ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = wechat_csv(tmp_path / "chat.csv", CHAT)
    assert cli(ws, "import", str(f), "--persona", "alice", "--me", "me", "--json") == 0
    s = out_json(capsys)
    assert s["imported"] == 1 and s["stored"] == 10 and s["me_messages"] == 4
    assert s["files"][0]["format"] == "wechat" and s["files"][0]["kinds"] == {"text": 9, "image": 1}
    # idempotent: the same file again changes nothing
    before = dump(ws)
    assert cli(ws, "import", str(f), "--persona", "alice", "--me", "me", "--json") == 0
    assert out_json(capsys)["unchanged"] == 1
    assert dump(ws) == before

    assert cli(ws, "make-dataset", "--persona", "alice", "--json") == 0
    md = out_json(capsys)
    assert md["samples"]["total"] == 2 and md["samples"]["duplicates_dropped"] == 1 and md["redacted"] == {"email": 1, "phone": 1}
    assert set(md["messages"]) == {"read", "kept", "skipped"} and md["tokens"]["suggested_cutoff_len"]

    out = tmp_path / "out" / "alice.jsonl"
    assert cli(ws, "export", "dataset", "--persona", "alice", "--format", "openai", "-o", str(out), "--json") == 0
    assert out_json(capsys)["written"] == 2
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 and len(lines[0]["messages"]) == 5
    for rec in lines:
        msgs = rec["messages"]
        assert msgs[0] == {"role": "system", "content": "You are Alice."}
        assert [m["role"] for m in msgs[1:]] == ["user", "assistant"] * ((len(msgs) - 1) // 2)

    assert cli(ws, "export", "dataset", "--persona", "alice", "--format", "sharegpt", "-o", str(out)) == 0
    rec = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert rec["system"] == "You are Alice." and rec["conversations"][0]["from"] == "human"
    assert rec["conversations"][1]["from"] == "gpt"

    assert cli(ws, "export", "dataset", "--persona", "alice", "--format", "alpaca", "-o", str(out)) == 0
    recs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert recs[0]["history"] == [["你好呀", "嗨！我的电话是<PHONE>"]]
    assert recs[0]["instruction"] == "my password is hunter2\n周末去喝茶吗"
    assert recs[0]["output"] == "好啊 mail me at <EMAIL>"
    assert recs[1] == {"instruction": "明天见", "input": "", "output": "明天见", "system": "You are Alice."}

    # rejected samples are never exported by default
    store = ws.store()
    with store.tx() as db:
        db.execute("UPDATE samples SET status = 'rejected' WHERE id = (SELECT min(id) FROM samples)")
    store.close()
    capsys.readouterr()
    assert cli(ws, "export", "dataset", "--persona", "alice", "-o", str(out), "--json") == 0
    assert out_json(capsys)["written"] == 1


def test_speakers_command_lists_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = wechat_csv(tmp_path / "g.csv", GROUP)
    assert main(["speakers", str(f), "--json"]) == 0
    assert out_json(capsys) == [["Carol", 2], ["Alice Zhang", 1], ["me", 1]]
    assert main(["speakers", str(f)]) == 0
    assert "Alice Zhang" in capsys.readouterr().out


def test_group_chat_names_survive(ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = wechat_csv(tmp_path / "g.csv", GROUP)
    assert cli(ws, "import", str(f), "--persona", "alice", "--me", "me") == 0
    assert cli(ws, "make-dataset", "--persona", "alice") == 0
    out = tmp_path / "g.jsonl"
    assert cli(ws, "export", "dataset", "--persona", "alice", "-o", str(out)) == 0
    (rec,) = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert rec["messages"][1] == {"role": "user", "content": "Alice Zhang: 大家好\nCarol: hi"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--persona", "alice", "--me", "Bobb"], "--me 'Bobb' is not a speaker in this file; closest: bob (6)"),
        (["--persona", "alice"], "--me is required for chat exports"),
        (["--persona", "alicee", "--me", "me"], "unknown persona 'alicee' (did you mean alice?)"),
    ],
)
def test_bad_arguments_one_line_nonzero_store_unchanged(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    good = wechat_csv(tmp_path / "good.csv", GROUP)
    assert cli(ws, "import", str(good), "--persona", "alice", "--me", "me") == 0
    capsys.readouterr()
    before = dump(ws)
    f = wechat_csv(tmp_path / "chat.csv", CHAT)
    assert cli(ws, "import", str(f), *argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert dump(ws) == before


def test_broken_file_rolls_back_the_whole_import(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = wechat_csv(tmp_path / "good.csv", CHAT)
    broken = tmp_path / "broken.csv"
    rows = "".join(f'{i},{i},文本,0,bob,,"line {i}",,2024-10-04 11:00:{i:02d}\n' for i in range(1, 40))
    broken.write_text(HEADER_ + rows + '40,40,文本,0,bob,,"bad"quote,,2024-10-04 12:00:00\n', encoding="utf-8")
    before = dump(ws)
    # the good file streams in first, then the broken one fails mid-stream: nothing stays
    assert cli(ws, "import", str(good), str(broken), "--persona", "alice", "--me", "me") == 2
    err = capsys.readouterr().err
    assert "broken.csv:" in err and err.count("\n") == 1
    after = dump(ws)
    assert [x for x in after if "INSERT INTO" in x] == [x for x in before if "INSERT INTO" in x]

    unknown = tmp_path / "x.bin"
    unknown.write_bytes(b"\x00\x01\x02 not a chat")
    assert cli(ws, "import", str(unknown), "--persona", "alice", "--me", "me") == 2
    assert "x.bin" in capsys.readouterr().err
    assert cli(ws, "import", str(tmp_path / "missing.csv"), "--persona", "alice", "--me", "me") == 2
    assert "missing.csv: no such file" in capsys.readouterr().err


HEADER_ = "id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime\n"


def test_bad_lines_are_counted_not_fatal(ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.csv"
    f.write_text(
        HEADER_
        + "1,1,文本,0,bob,,hi,,2024-10-04 11:00:00\n"
        + "2,2,文本,1,bob,,hey,,not-a-time\n"
        + "3,3,文本,7,bob,,??,,2024-10-04 11:00:10\n"
        + "4,4,文本,1,bob,,hello,,2024-10-04 11:00:20\n",
        encoding="utf-8",
    )
    assert cli(ws, "import", str(f), "--persona", "alice", "--me", "me", "--json") == 0
    s = out_json(capsys)
    assert s["stored"] == 2 and s["bad"] == 2 and len(s["files"][0]["bad_examples"]) == 2
    assert cli(ws, "import", str(f), "--persona", "alice", "--me", "me") == 0  # human output, no crash


def test_progress_only_on_a_terminal(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    f = wechat_csv(tmp_path / "chat.csv", CHAT)
    assert cli(ws, "import", str(f), "--persona", "alice", "--me", "me") == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert cli(ws, "make-dataset", "--persona", "alice", "--json") == 0
    cap = capsys.readouterr()
    assert "make-dataset [" in cap.err and "10/10" in cap.err
    assert json.loads(cap.out)["messages"]["read"] == 10  # stdout stays clean JSON


def test_unknown_persona_for_make_dataset_and_export(ws: Workspace, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(ws, "make-dataset", "--persona", "nobody") == 2
    assert "unknown persona 'nobody'" in capsys.readouterr().err
    assert cli(ws, "export", "dataset", "--persona", "nobody", "-o", str(tmp_path / "o.jsonl")) == 2
    assert not (tmp_path / "o.jsonl").exists()


def test_whatsapp_export_end_to_end(ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "WhatsApp Chat.txt"
    f.write_text(
        "12/31/23, 9:41 PM - Bob Lee: are you coming tonight?\n"
        "12/31/23, 9:42 PM - Alice Wu: yes!\n"
        "bringing cake\n"
        "12/31/23, 9:43 PM - Bob Lee: <Media omitted>\n"
        "12/31/23, 9:44 PM - Bob Lee: great, call me on +44 20 7946 0958\n"
        "12/31/23, 9:45 PM - Alice Wu: will do\n",
        encoding="utf-8",
    )
    assert cli(ws, "import", str(f), "--persona", "alice", "--me", "alice", "--json") == 2
    assert "closest: Alice Wu (2)" in capsys.readouterr().err
    assert cli(ws, "import", str(f), "--persona", "alice", "--me", "Alice Wu", "--json") == 0
    assert out_json(capsys)["files"][0]["format"] == "whatsapp"
    assert cli(ws, "make-dataset", "--persona", "alice", "--json") == 0
    assert out_json(capsys)["redacted"] == {"phone": 1}
    out = tmp_path / "w.jsonl"
    assert cli(ws, "export", "dataset", "--persona", "alice", "-o", str(out)) == 0
    (rec,) = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert rec["messages"][1:] == [
        {"role": "user", "content": "are you coming tonight?", "name": "Bob Lee"},
        {"role": "assistant", "content": "yes!\nbringing cake"},
        {"role": "user", "content": "great, call me on <PHONE>", "name": "Bob Lee"},
        {"role": "assistant", "content": "will do"},
    ]
