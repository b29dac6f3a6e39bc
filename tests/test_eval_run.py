"""`eval` end to end on the tiny model with the transformers engine: the adapter trained on the
persona's sentence beats the base model on every reference metric and ranks first; results land
in SQLite, eval.json and the reports; bad input is one line, exit 2, nothing stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from persona_studio import adapters
from persona_studio.eval import heldout, report
from persona_studio.eval.run import run_eval
from tests.eval_helpers import SENT, sentence_workspace
from tests.train_helpers import add_persona, add_samples, chat

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_model, adapter_cache):
    return sentence_workspace(tmp_path_factory.mktemp("eval") / "ws", tiny_model, adapter_cache)


@pytest.fixture(scope="module")
def result(ws):
    stages: list[str] = []
    out = run_eval(ws, "alice", "all", progress=lambda s, d, t: stages.append(s))
    out["_stages"] = stages
    return out


def test_adapter_trained_on_the_sentence_beats_the_base_and_ranks_first(result):
    by = {a["label"]: a for a in result["adapters"]}
    assert [a["label"] for a in result["adapters"]] == ["v0001", "base"]
    a, b = by["v0001"], by["base"]
    assert a["loss"] < b["loss"] and a["perplexity"] < b["perplexity"]
    for m in ("bleu", "chrf", "rouge_l"):
        assert a[m] > b[m], m
    assert a["style_distance"] < b["style_distance"]
    assert result["best"] == {m: "v0001" for m in ("loss", "perplexity", "bleu", "chrf", "rouge_l", "style_distance")}
    # the adapter says the sentence to held-out questions it never saw
    assert all(it["replies"]["v0001"] == SENT and it["real"] == SENT for it in result["items"])
    assert {"loss", "generate"} <= set(result["_stages"])


def test_heldout_items_are_the_persona_heldout_set(ws, result):
    held = heldout.persona_split(ws, "alice").held
    assert result["n_heldout"] == len(held) == 4  # 20 samples: eval.heldout_min 10, capped at a fifth
    asked = sorted(it["history"][-1]["content"] for it in result["items"])
    assert asked == sorted(s["turns"][0]["content"] for s in held)
    assert result["items"][0]["history"][0] == {"role": "system", "content": "You are Alice."}


def test_probe_answers_side_by_side(result):
    assert [p["question"] for p in result["probes"]] == ["Who are you?", "How was your day?"]
    assert all(set(p["replies"]) == {"v0001", "base"} and p["replies"]["v0001"] == SENT for p in result["probes"])


def test_results_are_stored_in_sqlite_eval_json_and_reports(ws, result):
    latest = report.latest(ws, "alice")
    assert latest["run_id"] == result["run_id"] and latest["best"] == result["best"]
    store = ws.store()
    try:
        rows = store.query("SELECT adapter, metric, value FROM eval_scores WHERE run_id = ?", (result["run_id"],))
        state = store.query("SELECT state FROM eval_runs WHERE id = ?", (result["run_id"],))[0]["state"]
    finally:
        store.close()
    assert state == "done"
    got = {(r["adapter"], r["metric"]): r["value"] for r in rows}
    assert got[("v0001", "bleu")] == pytest.approx(result["adapters"][0]["bleu"])
    ev = json.loads((adapters.adapters_dir(ws, "alice") / "v0001" / "eval.json").read_text())
    assert ev["run_id"] == result["run_id"] and ev["metrics"]["loss"] == result["adapters"][0]["loss"]
    md = (ws.exports_dir / f"eval-alice-{result['run_id']:04d}.md").read_text()
    assert "| 1 | v0001 |" in md and f"**{result['adapters'][0]['bleu']:.2f}**" in md and "Who are you?" in md
    lines = [json.loads(x) for x in (ws.exports_dir / f"eval-alice-{result['run_id']:04d}.jsonl").read_text().splitlines()]
    assert [x["kind"] for x in lines].count("probe") == 2 and [x["kind"] for x in lines].count("heldout") == 4


def _cli(ws, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "persona_studio", *args, "-w", str(ws.root)],
                          capture_output=True, text=True, env=env, timeout=600)


def test_cli_json_is_clean_json_on_stdout(ws):
    proc = _cli(ws, "eval", "--persona", "alice", "--adapters", "base,current", "--limit", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert [a["label"] for a in data["adapters"]] == ["v0001", "base"] and data["n_heldout"] == 2


@pytest.mark.parametrize(("args", "match"), [
    (("--adapters", "v0007"), "no adapter version 'v0007' (versions: v0001)"),
    (("--adapters", "base", "--limit", "0"), "--limit: must be at least 1"),
])
def test_bad_adapter_or_limit_is_one_line_exit_2_and_nothing_stored(ws, args, match):
    before = report.runs(ws, "alice")
    proc = _cli(ws, "eval", "--persona", "alice", *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and match in proc.stderr, proc.stderr
    assert report.runs(ws, "alice") == before


def test_persona_without_samples_or_heldout_set_is_refused(tmp_path, tiny_model):
    from persona_studio.cli import main
    from tests.train_helpers import make_ws

    w = make_ws(tmp_path / "w", tiny_model)
    add_persona(w, "bob", "Bob")
    assert main(["eval", "--persona", "bob", "-w", str(w.root)]) == 2
    add_samples(w, "bob", [chat("hi", "yo"), chat("tea?", "no")])
    with pytest.raises(Exception, match="too few for a held-out set"):
        run_eval(w, "bob")
    assert report.runs(w, "bob") == []


def test_judge_without_the_base_model_is_refused_before_anything_runs(ws):
    from persona_studio.eval.run import EvalError

    before = report.runs(ws, "alice")
    with pytest.raises(EvalError, match="include base"):
        run_eval(ws, "alice", "current", judge=True)
    assert report.runs(ws, "alice") == before


def test_engine_that_fails_to_start_is_one_line_exit_2_and_no_scores(tmp_path, tiny_model, adapter_cache):
    w = sentence_workspace(tmp_path / "w", tiny_model, adapter_cache, backend="remote",
                           engine={"backend": "remote", "base_url": "http://127.0.0.1:9/v1", "timeout_s": 5})
    proc = _cli(w, "eval", "--persona", "alice", "--adapters", "current", "--limit", "1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "not reachable" in proc.stderr
    assert [r["state"] for r in report.runs(w, "alice")] == ["failed"]
    assert report.latest(w, "alice") is None
    assert not (adapters.adapters_dir(w, "alice") / "v0001" / "eval.json").exists()
