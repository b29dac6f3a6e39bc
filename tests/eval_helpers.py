"""A persona whose real replies are one sentence, with an adapter trained to say it."""

from __future__ import annotations

import json
from pathlib import Path

from persona_studio.workspace import Workspace, atomic_write
from tests.train_helpers import add_persona, add_samples, chat

SENT = "Alice likes books and tea."
QUESTIONS = [f"Question number {i}, what do you like?" for i in range(20)]


def trained_adapter(cache: Path, base: Path, sentence: str) -> Path:
    """A sentence adapter, trained once per test session (same cache as the engine tests)."""
    from persona_studio.testkit import train_sentence_adapter

    out = cache / "".join(c for c in sentence.lower() if c.isalnum())[:24]
    if not (out / "adapter_config.json").exists():
        train_sentence_adapter(base, out, sentence)
    return out


def install_adapter(ws: Workspace, persona_id: str, src: Path) -> Path:
    import shutil

    from persona_studio import adapters

    dest = adapters.new_version_dir(ws, persona_id)
    for f in src.iterdir():
        shutil.copy2(f, dest / f.name)
    adapters.set_current(ws, persona_id, dest.name)
    return dest


def sentence_workspace(root: Path, tiny_model: Path, cache: Path, backend: str = "transformers",
                       **extra: dict) -> Workspace:
    settings = {
        "model": {"name_or_path": str(tiny_model), "dtype": "float32"},
        "engine": {"backend": backend},
        "vllm_args": {"gpu_memory_utilization": 0.1, "max_model_len": 512, "enforce_eager": True},
        "train_sft_args": {"cutoff_len": 128},
        "eval": {"max_new_tokens": 16, "probes_en": ["Who are you?", "How was your day?"]},
        **extra,
    }
    ws = Workspace.init(root)
    atomic_write(ws.settings_path, json.dumps(settings))
    ws = Workspace.open(root)
    add_persona(ws, "alice", system_prompt="You are {{char}}.")
    add_samples(ws, "alice", [chat(q, SENT) for q in QUESTIONS])
    install_adapter(ws, "alice", trained_adapter(cache, tiny_model, SENT))
    return ws
