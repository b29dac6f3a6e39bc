"""Helpers for the training tests: a workspace on the tiny model, a persona, samples in the store."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from persona_studio.workspace import Workspace, atomic_write

REPLY = "I am Alice, I like tea and rabbits."
PROMPT = "Who are you?"


def make_ws(root: Path, base_model: Path | str, **train: Any) -> Workspace:
    """A workspace whose settings point at `base_model`, with small CPU-friendly training settings."""
    args = {
        "lora_rank": 8,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "cutoff_len": 128,
        "eval_ratio": 0.0,
        "identity_samples": 0,
        "lora_dropout": 0.0,
        "learning_rate": 3e-3,
        "max_steps": 20,
        "save_steps": 5,
        **train,
    }
    ws = Workspace.init(root)
    settings = {"model": {"name_or_path": str(base_model)}, "train_sft_args": args}
    atomic_write(ws.settings_path, json.dumps(settings, indent=2))
    return Workspace.open(root)


def add_persona(ws: Workspace, pid: str, name: str = "Alice", **card: str) -> None:
    body = {
        "name": name,
        "description": card.get("description", "A girl who loves tea."),
        "personality": card.get("personality", "curious and kind"),
        "system_prompt": card.get("system_prompt", f"You are {name}."),
    }
    atomic_write(ws.persona_dir(pid) / "persona.jsonc", json.dumps(body, ensure_ascii=False))


def add_samples(ws: Workspace, pid: str, convs: list[list[dict[str, str]]], status: str = "pending",
                score: float | None = None) -> None:
    store = ws.store()
    try:
        with store.tx() as db:
            for turns in convs:
                cur = db.execute(
                    "INSERT INTO samples(persona_id, hash, system, turns, n_turns, status) VALUES (?,?,?,?,?,?)",
                    (pid, f"{status}-{json.dumps(turns)}", "", json.dumps(turns, ensure_ascii=False), len(turns), status),
                )
                if score is not None:
                    db.execute("INSERT INTO scores(sample_id, judge, score) VALUES (?,?,?)", (cur.lastrowid, "t", score))
    finally:
        store.close()


def chat(user: str, reply: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def until(pred: Callable[[], object], timeout: float, what: str) -> object:
    """pred()'s first truthy value, polled every 0.1 s (a training job's files appear as it runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
