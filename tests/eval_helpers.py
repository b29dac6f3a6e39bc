"""A persona whose real replies are one sentence, with an adapter trained to say it."""

from __future__ import annotations

import json
from pathlib import Path

from persona_studio.workspace import Workspace, atomic_write
from tests.engine_helpers import install_adapter, trained_adapter
from tests.train_helpers import add_persona, add_samples, chat

SENT = "Alice likes books and tea."
QUESTIONS = [f"Question number {i}, what do you like?" for i in range(20)]


def sentence_workspace(root: Path, tiny_model: Path, cache: Path, backend: str = "transformers",
                       **extra: dict) -> Workspace:
    settings = {
        "model": {"name_or_path": str(tiny_model), "dtype": "float32"},
        "engine": {"backend": backend},
        # cpu_kv_cache_gib 0: vLLM's own RAM-fraction rule, kept under test here (the default is a fixed size).
        "vllm_args": {"gpu_memory_utilization": 0.1, "cpu_kv_cache_gib": 0, "max_model_len": 512,
                      "enforce_eager": True},
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
