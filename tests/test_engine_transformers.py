"""The transformers + peft fallback passes the same party test as vLLM: own adapter per
persona, a retrained version picked up on the next turn, base model marked, bad adapters
reported in one line."""

from __future__ import annotations

import random
import shutil

import pytest

from persona_studio import adapters
from persona_studio.chat.session import Conversation
from persona_studio.chat.tree import ChatTree
from persona_studio.engine import EngineError, GenRequest, Sampling, make_engine
from tests.engine_helpers import (
    SENT_A,
    SENT_A2,
    SENT_B,
    install_adapter,
    make_party_workspace,
    trained_adapter,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf_ws(tmp_path_factory, tiny_model, adapter_cache):
    return make_party_workspace(tmp_path_factory.mktemp("hf") / "ws", tiny_model, "transformers", adapter_cache)


@pytest.fixture(scope="module")
def engine(hf_ws):
    eng = make_engine(hf_ws)
    assert eng.name == "transformers"
    eng.start()
    yield eng
    eng.close()


@pytest.fixture
def conv(hf_ws, engine):
    store = hf_ws.store()
    yield lambda ids: Conversation.create(hf_ws, engine, ChatTree(store), ids, kind="party", rng=random.Random(0))
    store.close()


def test_party_turns_carry_each_personas_own_adapter(conv):
    c = conv(["alice", "bob"])
    c.say("Welcome to the tea party!")
    results = c.run(4, strategy="list")
    assert [(r.persona_id, r.adapter, r.text) for r in results] == [
        ("alice", "alice/v0001", SENT_A), ("bob", "bob/v0001", SENT_B),
        ("alice", "alice/v0001", SENT_A), ("bob", "bob/v0001", SENT_B),
    ]
    assert all(r.gen_tokens == r.n_tokens + 1 for r in results)  # same count as vLLM's


def test_retrained_adapter_version_is_used_without_restart(hf_ws, engine, conv, tiny_model, adapter_cache):
    model_before = engine.model
    c = conv(["alice", "bob"])
    assert c.reply("alice").text == SENT_A
    install_adapter(hf_ws, "alice", trained_adapter(adapter_cache, tiny_model, SENT_A2))
    try:
        r = c.reply("alice")
        assert (r.text, r.adapter) == (SENT_A2, "alice/v0002")
        assert c.reply("bob").text == SENT_B
        assert engine.model is model_before
        # the superseded version was dropped from the PeftModel; bob's stays
        assert sorted(n.split("__")[0] for n in engine._loaded.values()) == ["alice", "bob"]
    finally:
        adapters.set_current(hf_ws, "alice", "v0001")
    assert c.reply("alice").text == SENT_A  # and back: a version change either way works


def test_persona_without_adapter_uses_the_base_model_marked(conv):
    r = conv(["carol", "alice"]).reply("carol")
    assert r.adapter == "base" and r.message.meta["base_model"] is True
    assert r.text not in (SENT_A, SENT_B, SENT_A2)


def test_missing_adapter_dir_is_one_line(hf_ws, engine, tmp_path):
    req = GenRequest([{"role": "user", "content": "hi"}], "bob", tmp_path / "v0042", Sampling(temperature=0))
    with pytest.raises(EngineError, match=r"v0042: adapter directory is missing") as info:
        list(engine.generate(req))
    assert "\n" not in str(info.value)


def test_abort_stops_a_running_generation(hf_ws, engine, adapter_cache, tiny_model):
    req = GenRequest([{"role": "user", "content": "hi"}], "x", None, Sampling(temperature=0, max_new_tokens=200))
    gen = engine.generate(req)
    next(gen)
    engine.abort(req.request_id)
    rest = list(gen)
    assert len(rest) < 150  # far fewer than the 200 tokens asked for
    ad = trained_adapter(adapter_cache, tiny_model, SENT_B)
    again = GenRequest(req.prompt_messages, "bob", ad, Sampling(temperature=0))
    assert "".join(engine.generate(again)) == SENT_B


def test_broken_adapter_copy_is_one_line(hf_ws, engine, adapter_cache, tiny_model, tmp_path):
    broken = tmp_path / "v0007"
    shutil.copytree(trained_adapter(adapter_cache, tiny_model, SENT_B), broken)
    (broken / "adapter_model.safetensors").unlink()
    req = GenRequest([{"role": "user", "content": "hi"}], "bob", broken, Sampling(temperature=0))
    with pytest.raises(EngineError, match="no adapter_model"):
        list(engine.generate(req))


def test_regenerate_adds_a_swipe_with_the_adapter_used(hf_ws, engine):
    store = hf_ws.store()
    try:
        tree = ChatTree(store)
        c = Conversation.create(hf_ws, engine, tree, ["bob"], kind="chat")
        c.say("hi")
        first = c.reply("bob")
        again = c.regenerate(first.message.id)
        assert again.message.parent_id == first.message.parent_id
        assert [m.content for m in tree.swipes(first.message.id)] == [SENT_B, SENT_B]
        assert again.adapter == "bob/v0001" and c.history()[-1].id == again.message.id
        with pytest.raises(Exception, match="only a persona's reply"):
            c.regenerate(c.history()[0].id)
    finally:
        store.close()


def test_long_history_is_trimmed_to_fit_the_context(hf_ws, engine):
    store = hf_ws.store()
    try:
        c = Conversation.create(hf_ws, engine, ChatTree(store), ["alice", "bob"], kind="party")
        for i in range(40):  # far beyond max_model_len 512 together
            c.say(f"Line {i}: the tea is ready, would you like some cake with it?")
        r = c.reply("alice")
        # the tiny model was trained on a short prompt: near the context limit it still starts
        # with its sentence but may not stop cleanly, so only the start is checked
        assert r.text.startswith("Alice likes books") and r.adapter == "alice/v0001"
        assert len(c.history()) == 41  # trimming shortens the prompt, never the stored chat
    finally:
        store.close()


def test_abort_from_another_thread_keeps_the_partial_reply_marked(hf_ws, engine):
    store = hf_ws.store()
    try:
        c = Conversation.create(hf_ws, engine, ChatTree(store), ["carol", "alice"], kind="party")
        c.sampling = Sampling(temperature=0, max_new_tokens=200, repetition_penalty=1.0)
        seen: list[str] = []

        def on_delta(_pid: str, d: str) -> None:
            seen.append(d)
            if len(seen) == 3:
                c.abort()

        r = c.reply("carol", on_delta=on_delta)
        assert r.message.meta.get("stopped") is True
        assert 3 <= len(seen) < 150 and r.message.role == "assistant"
    finally:
        store.close()


def test_context_is_clamped_to_the_models_positions(tmp_path, tiny_model, adapter_cache):
    """settings ask for 4096 tokens, the tiny model has 1024 positions: history is trimmed to 1024."""
    ws = make_party_workspace(tmp_path / "ws", tiny_model, "transformers", adapter_cache,
                              vllm_args={"max_model_len": 4096})
    eng = make_engine(ws)
    eng.start()
    store = ws.store()
    try:
        assert eng.max_model_len == 1024
        c = Conversation.create(ws, eng, ChatTree(store), ["alice", "bob"], kind="party")
        for i in range(150):  # ~2,500 tokens: fits 4096 but not the model
            c.say(f"Line {i}: the tea is ready, would you like some cake with it?")
        r = c.reply("alice")  # without the clamp this prompt overflows the model's positions
        assert r.text.startswith("Alice likes books")
    finally:
        store.close()
        eng.close()
