"""The held-out set through the real pipeline: import -> make-dataset -> train job. It is the same
after make-dataset runs again (and after more chats arrive), and no training data.jsonl holds any
of its conversations; the job's eval split is taken from it."""

from __future__ import annotations

import json
from pathlib import Path

from persona_studio.clean.pipeline import make_dataset
from persona_studio.eval import heldout
from persona_studio.importer import import_files
from persona_studio.train import data as data_mod
from persona_studio.train import jobs
from persona_studio.workspace import Workspace, atomic_write
from tests.test_clean_pipeline import add_persona


def _export(path: Path, n: int, start: int = 0) -> Path:
    lines = [json.dumps({"messages": [{"role": "user", "content": f"question {i}?"},
                                      {"role": "assistant", "content": f"answer {i}, with tea."}]})
             for i in range(start, start + n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _keys(samples: list[dict]) -> set[str]:
    return {json.dumps(s["turns"], ensure_ascii=False) for s in samples}


def test_heldout_is_stable_across_make_dataset_runs_and_never_trained_on(workspace: Workspace, tmp_path: Path,
                                                                         tiny_model: Path) -> None:
    atomic_write(workspace.settings_path, json.dumps({
        "model": {"name_or_path": str(tiny_model)},
        "train_sft_args": {"quantization": "none", "identity_samples": 3, "eval_ratio": 0.05},
        "eval": {"heldout_fraction": 0.1, "heldout_min": 5},
    }))
    ws = Workspace.open(workspace.root)
    add_persona(ws)
    import_files(ws, "alice", [_export(tmp_path / "a.jsonl", 60)], None)
    make_dataset(ws, "alice")
    first = heldout.persona_split(ws, "alice")
    assert len(first.held) >= 5 and not first.warnings
    make_dataset(ws, "alice")  # a re-run
    again = heldout.persona_split(ws, "alice")
    assert _keys(again.held) == _keys(first.held) and _keys(again.train) == _keys(first.train)
    # more chats: the old conversations keep their side (the fraction rule looks at each alone)
    import_files(ws, "alice", [_export(tmp_path / "b.jsonl", 60, start=60)], None)
    make_dataset(ws, "alice")
    grown = heldout.persona_split(ws, "alice")
    old = _keys(first.held) | _keys(first.train)
    assert _keys(grown.held) & old == _keys(first.held)

    job_dir = jobs.create_job(ws, "alice")
    rows = data_mod.read_jsonl(job_dir / "data.jsonl")
    trained = {json.dumps([m for m in r["messages"] if m["role"] != "system"], ensure_ascii=False)
               for r in rows if r["split"] == "train"}
    evals = {json.dumps([m for m in r["messages"] if m["role"] != "system"], ensure_ascii=False)
             for r in rows if r["split"] == "eval"}
    assert trained and not trained & _keys(grown.held)
    assert evals == _keys(grown.held)  # training's eval loss is measured on the held-out set
    assert len(trained) == len(grown.train) + 3  # every other sample, plus the identity samples


def test_too_few_samples_warn_and_a_single_sample_is_never_held_out(workspace: Workspace) -> None:
    from tests.train_helpers import add_samples, chat

    add_persona(workspace)
    add_samples(workspace, "alice", [chat("only", "one")])
    assert heldout.persona_split(workspace, "alice").held == []
    add_samples(workspace, "alice", [chat(f"q{i}", f"a{i}") for i in range(9)])
    s = heldout.persona_split(workspace, "alice")
    assert len(s.held) == 2 and "only 2 held-out conversation(s) of 10 samples" in s.warnings[0]
