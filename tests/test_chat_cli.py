"""Headless `chat` and `party` through the CLI (transformers backend: starts in seconds), the
failure paths (server down, missing adapter mid-party, manual without speakers) and lore."""

from __future__ import annotations

import json
import shutil

import pytest

from persona_studio import adapters
from persona_studio.chat.tree import ChatTree
from persona_studio.cli import main
from persona_studio.workspace import Workspace
from tests.engine_helpers import SENT_A, SENT_B, make_party_workspace

pytestmark = pytest.mark.slow


@pytest.fixture
def ws(tmp_path, tiny_model, adapter_cache) -> Workspace:
    return make_party_workspace(tmp_path / "ws", tiny_model, "transformers", adapter_cache)


def _run(capsys, ws: Workspace, *argv: str) -> tuple[int, str, str]:
    code = main([argv[0], "-w", str(ws.root), *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_party_json_transcript_names_speaker_adapter_and_text(ws, capsys):
    code, out, err = _run(capsys, ws, "party", "alice", "bob", "carol", "--turns", "5", "--strategy", "list",
                          "--topic", "Shall we have tea?", "--json", "--seed", "1")
    assert code == 0, err
    data = json.loads(out)
    turns = [(t["speaker"], t["adapter"]) for t in data["turns"]]
    assert turns == [("alice", "alice/v0001"), ("bob", "bob/v0001"), ("carol", "base"),
                     ("alice", "alice/v0001"), ("bob", "bob/v0001")]
    texts = {t["speaker"]: t["text"] for t in data["turns"]}
    assert texts["alice"] == SENT_A and texts["bob"] == SENT_B
    store = ws.store()
    try:
        path = ChatTree(store).path(data["chat_id"])
        assert [m.speaker for m in path] == ["user", "alice", "bob", "carol", "alice", "bob"]
        assert path[0].content == "Shall we have tea?" and all(m.n_tokens for m in path)
    finally:
        store.close()


def test_party_natural_strategy_runs_the_asked_number_of_turns(ws, capsys):
    code, out, err = _run(capsys, ws, "party", "alice", "bob", "--turns", "3", "--json", "--seed", "3")
    assert code == 0, err
    turns = json.loads(out)["turns"]
    assert len(turns) == 3
    assert all(a["speaker"] != b["speaker"] for a, b in zip(turns, turns[1:], strict=False))  # no self-answers


def test_chat_one_shot_and_continue(ws, capsys):
    code, out, err = _run(capsys, ws, "chat", "alice", "--message", "Hello Alice", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert (first["speaker"], first["adapter"], first["text"]) == ("alice", "alice/v0001", SENT_A)
    code, out, _ = _run(capsys, ws, "chat", "alice", "-m", "And again?", "--chat", str(first["chat_id"]))
    assert code == 0
    assert out.strip() == f"Alice [alice/v0001]: {SENT_A}"
    store = ws.store()
    try:
        assert len(ChatTree(store).path(first["chat_id"])) == 4
    finally:
        store.close()


def test_missing_adapter_mid_party_keeps_the_conversation(ws, capsys):
    shutil.rmtree(adapters.current(ws, "bob"))
    code, out, err = _run(capsys, ws, "party", "alice", "bob", "--turns", "4", "--strategy", "list", "--json")
    assert code == 2
    assert err.count("\n") == 1 and "adapter directory is missing" in err
    data = json.loads(out)
    assert [t["speaker"] for t in data["turns"]] == ["alice"] and "bob" in data["error"]
    store = ws.store()
    try:
        assert [m.content for m in ChatTree(store).path(data["chat_id"])] == [SENT_A]
    finally:
        store.close()


def test_remote_server_down_is_one_line(ws, capsys):
    text = ws.settings_path.read_text().replace('"backend": "transformers"',
                                                 '"backend": "remote", "base_url": "http://127.0.0.1:9/v1"')
    ws.settings_path.write_text(text)
    code, out, err = _run(capsys, ws, "chat", "alice", "-m", "hi")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "http://127.0.0.1:9/v1: server not reachable" in err


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["party", "alice"], "at least 2 different personas"),
        (["party", "alice", "alice"], "at least 2 different personas"),
        (["party", "alice", "bob", "--strategy", "manual"], "--force"),
        (["party", "alice", "bob", "--force", "carol"], "--force carol: not one of the party"),
        (["party", "alice", "nobody"], "no such persona"),
        (["chat", "nobody", "-m", "hi"], "no such persona"),
    ],
)
def test_bad_arguments_fail_before_the_engine_starts(ws, capsys, argv, msg):
    code, _, err = _run(capsys, ws, *argv)
    assert code == 2 and msg in err and err.count("\n") == 1


def test_manual_strategy_uses_forced_speakers_in_order(ws, capsys):
    code, out, err = _run(capsys, ws, "party", "alice", "bob", "--strategy", "manual", "--turns", "3",
                          "--force", "bob", "--force", "bob", "--force", "alice", "--json")
    assert code == 0, err
    assert [t["speaker"] for t in json.loads(out)["turns"]] == ["bob", "bob", "alice"]


def test_lore_snippets_are_used_and_recorded_per_turn(ws, capsys):
    text = ws.settings_path.read_text().replace('"enable": false', '"enable": true')
    ws.settings_path.write_text(text)
    lore = ws.persona_dir("alice") / "lore"
    lore.mkdir()
    (lore / "garden.md").write_text("Alice's garden has red roses and an old oak tree.\n")
    code, out, err = _run(capsys, ws, "chat", "alice", "-m", "Tell me about your garden and the roses", "--json")
    assert code == 0, err
    got = json.loads(out)["lore"]
    assert got and got[0]["source"].endswith("garden.md") and "red roses" in got[0]["text"]
