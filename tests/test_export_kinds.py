"""The export kinds the Export screen offers, run headless (dataset, card, serve script, defaults)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from persona_studio.errors import UserError
from persona_studio.export.kinds import available_kinds, default_out, run_export
from tests.export_helpers import add_persona


def test_menu_offers_dataset_and_card_kinds_when_present() -> None:
    kinds = [k for _, k in available_kinds()]
    assert kinds[:3] == ["model", "adapter", "adapter-zip"] and kinds[-1] == "serve"
    assert {"dataset:openai", "dataset:sharegpt", "dataset:alpaca", "card:v2", "card:v3"} <= set(kinds)


def test_defaults_live_under_exports(workspace) -> None:
    add_persona(workspace, "alice")
    d = workspace.exports_dir
    assert default_out(workspace, "model", "alice") == d / "alice-merged"
    assert default_out(workspace, "dataset:sharegpt", "alice") == d / "alice.sharegpt.jsonl"
    assert default_out(workspace, "card:v3", "alice") == d / "alice.v3.png"
    assert default_out(workspace, "serve", "") == d / "serve.sh"


def test_card_dataset_and_refusals(workspace, tmp_path: Path) -> None:
    from persona_studio.persona.card import read_card_file

    add_persona(workspace, "alice", "Alice Liddell")
    line = run_export(workspace, "card:v3", "alice", tmp_path / "a.png")
    assert "V3 card of Alice Liddell" in line
    assert read_card_file(tmp_path / "a.png")["data"]["name"] == "Alice Liddell"
    with pytest.raises(UserError, match="already exists"):
        run_export(workspace, "card:v2", "alice", tmp_path / "a.png")

    store = workspace.store()
    with store.tx() as db:
        db.execute(
            "INSERT INTO samples (persona_id, hash, system, turns, n_turns, status) VALUES (?, ?, ?, ?, ?, ?)",
            ("alice", "h1", "You are Alice.",
             json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]), 2,
             "accepted"),
        )
    store.close()
    line = run_export(workspace, "dataset:openai", "alice", tmp_path / "d.jsonl")
    assert line.startswith("wrote 1 samples")
    rec = json.loads((tmp_path / "d.jsonl").read_text())
    assert rec["messages"][-1] == {"role": "assistant", "content": "hello"}


def test_serve_script_is_executable_shell(workspace, tmp_path: Path) -> None:
    add_persona(workspace, "alice")
    out = tmp_path / "serve.sh"
    line = run_export(workspace, "serve", "", out)
    assert "no adapters" in line
    assert os.access(out, os.X_OK)
    text = out.read_text()
    assert text.startswith("#!/bin/sh\n") and "# skipped alice: no trained adapter" in text
    check = subprocess.run(["sh", "-n", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_export_screen_module_imports_no_heavy_library() -> None:
    code = (
        "import sys, persona_studio.export.kinds, persona_studio.export.serve, persona_studio.commands.export;"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'vllm', 'textual') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
