"""Persona workspaces with sentence adapters, shared by the engine, chat and TUI tests.

A sentence adapter makes the tiny random Llama say one known sentence, so "this turn went
through alice's adapter" is a checkable fact. Each is trained once per test session.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from persona_studio import adapters
from persona_studio.workspace import Workspace, atomic_write

SENT_A = "Alice likes books and tea."
SENT_B = "Bob builds robots on weekends."
SENT_A2 = "The tea is ready. Would you like some cake?"


def trained_adapter(cache: Path, base: Path, sentence: str) -> Path:
    """A sentence adapter, trained once per test session (the slow part: ~10 s each)."""
    from persona_studio.testkit import train_sentence_adapter

    out = cache / "".join(c for c in sentence.lower() if c.isalnum())[:24]
    if not (out / "adapter_config.json").exists():
        train_sentence_adapter(base, out, sentence)
    return out


def install_adapter(ws: Workspace, persona_id: str, src: Path) -> Path:
    """Copy a trained adapter in as the persona's next version and make it current."""
    dest = adapters.new_version_dir(ws, persona_id)
    for f in src.iterdir():
        shutil.copy2(f, dest / f.name)
    adapters.set_current(ws, persona_id, dest.name)
    return dest


def make_party_workspace(root: Path, tiny_model: Path, backend: str, cache: Path, **extra: dict) -> Workspace:
    """alice (adapter A), bob (adapter B), carol (no adapter) on the tiny model, greedy decoding."""
    from persona_studio.persona.card import Persona, save_persona

    settings = {
        "model": {"name_or_path": str(tiny_model), "dtype": "float32"},
        "engine": {"backend": backend},
        "vllm_args": {"cpu_kv_cache_gib": 0.25, "max_model_len": 512, "enforce_eager": True},
        "infer_args": {"temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": 24},
        "rag_args": {"enable": False},
        **extra,
    }
    ws = Workspace.init(root)
    atomic_write(ws.settings_path, json.dumps(settings))
    ws = Workspace.open(root)
    for pid, name in (("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")):
        save_persona(ws, Persona(id=pid, name=name, description=f"{name} is a guest at the tea party."))
    install_adapter(ws, "alice", trained_adapter(cache, tiny_model, SENT_A))
    install_adapter(ws, "bob", trained_adapter(cache, tiny_model, SENT_B))
    return ws
