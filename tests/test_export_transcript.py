"""`export transcript`: only the shown path (root → head) of a chat tree, with speakers and adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persona_studio.chat.tree import ChatError, ChatTree
from persona_studio.cli import main
from persona_studio.export.transcript import export_transcript


@pytest.fixture
def chat(workspace):
    """A party chat with a swipe and a branch: the head path is hi → alice-2 → again → bob."""
    store = workspace.store()
    tree = ChatTree(store)
    c = tree.create_chat(["alice", "bob"], kind="party", title="Tea at four")
    tree.add(c.id, "user", "Me", "hi")
    a1 = tree.add(c.id, "assistant", "Alice", "alice-1 (swiped away)", adapter="alice/v0001")
    tree.add(c.id, "user", "Me", "dead branch")
    a2 = tree.add_swipe(a1.id, "alice-2", adapter="alice/v0002")
    tree.select(a2.id)
    tree.add(c.id, "user", "Me", "again", parent_id=a2.id)
    tree.add(c.id, "assistant", "Bob", "bob says hello", adapter="base")
    store.close()
    return c.id


def test_jsonl_follows_the_head_path_only(workspace, chat: int, tmp_path: Path) -> None:
    summary = export_transcript(workspace, chat, tmp_path / "t.jsonl", "jsonl")
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert summary["messages"] == 4
    assert [r["content"] for r in rows] == ["hi", "alice-2", "again", "bob says hello"]
    assert [r["speaker"] for r in rows] == ["Me", "Alice", "Me", "Bob"]
    assert [r["adapter"] for r in rows] == ["", "alice/v0002", "", "base"]
    assert rows[0]["parent_id"] is None and all(rows[i]["parent_id"] == rows[i - 1]["id"] for i in range(1, 4))


def test_markdown_names_speakers_and_adapters(workspace, chat: int, tmp_path: Path) -> None:
    export_transcript(workspace, chat, tmp_path / "t.md")
    text = (tmp_path / "t.md").read_text()
    assert text.startswith("# Tea at four\n")
    assert "personas: alice, bob" in text
    assert "**Alice** _(alice/v0002)_:\n\nalice-2" in text and "**Bob** _(base)_:\n\nbob says hello" in text
    assert "swiped away" not in text and "dead branch" not in text
    assert text.index("hi") < text.index("alice-2") < text.index("again") < text.index("bob says")


def test_errors_and_cli(workspace, chat: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ChatError, match="chat 99: no such chat"):
        export_transcript(workspace, 99, tmp_path / "x.md")
    assert not (tmp_path / "x.md").exists()

    rc = main(["export", "transcript", "-w", str(workspace.root), "--chat", str(chat), "--format", "jsonl", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out"] == str(workspace.exports_dir / f"chat-{chat}.jsonl") and summary["messages"] == 4

    rc = main(["export", "transcript", "-w", str(workspace.root), "--chat", str(chat), "--format", "jsonl"])
    err = capsys.readouterr().err
    assert rc == 2 and "already exists" in err and err.count("\n") == 1
