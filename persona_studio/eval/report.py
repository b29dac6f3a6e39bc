"""Where eval results go, and how they are read back.

    SQLite  eval_runs (one row per run: state, the whole result as JSON) and eval_scores
            (run, adapter, metric, value), written only when a run completes
    personas/<id>/adapters/<version>/eval.json   that adapter's scores in its latest run
    .studio/exports/eval-<persona>-<run>.md / .jsonl   the table, side-by-side replies, probes
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from persona_studio import adapters as adapters_mod
from persona_studio.workspace import atomic_write

METRIC_LABELS = {"loss": "held-out loss", "perplexity": "perplexity", "bleu": "BLEU", "chrf": "chrF",
                 "rouge_l": "ROUGE-L", "style_distance": "style distance"}


def start_run(ws: Any, plan: Any) -> int:
    e = ws.settings.eval
    store = ws.store()
    try:
        with store.tx() as db:
            cur = db.execute(
                "INSERT INTO eval_runs (persona_id, state, adapters, settings) VALUES (?, 'running', ?, ?)",
                (plan.persona_id, json.dumps([label for label, _ in plan.adapters]),
                 json.dumps({"heldout_fraction": e.heldout_fraction, "heldout_min": e.heldout_min, "seed": e.seed,
                             "max_new_tokens": e.max_new_tokens, "backend": ws.settings.engine.backend})),
            )
            return int(cur.lastrowid)
    finally:
        store.close()


def end_run(ws: Any, run_id: int, state: str, error: str | None) -> None:
    store = ws.store()
    try:
        with store.tx() as db:
            db.execute("UPDATE eval_runs SET state = ?, error = ?, finished_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')"
                       " WHERE id = ? AND state = 'running'", (state, error, run_id))
    finally:
        store.close()


def finish_run(ws: Any, run_id: int, result: dict[str, Any]) -> dict[str, Any]:
    """Scores and state 'done' in one transaction, then eval.json per adapter and the reports."""
    pid = result["persona_id"]
    store = ws.store()
    try:
        with store.tx() as db:
            for a in result["adapters"]:
                for metric, value in a.items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        db.execute("INSERT INTO eval_scores (run_id, adapter, metric, value) VALUES (?, ?, ?, ?)",
                                   (run_id, a["label"], metric, float(value)))
            row = db.execute("UPDATE eval_runs SET state = 'done', report = ?, "
                             "finished_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ? RETURNING finished_at",
                             (json.dumps(result, ensure_ascii=False), run_id)).fetchone()
    finally:
        store.close()
    result = {**result, "finished_at": row[0]}
    for a in result["adapters"]:
        if a["label"] == "base":
            continue
        path = adapters_mod.adapters_dir(ws, pid) / a["label"] / "eval.json"
        if path.parent.is_dir():
            atomic_write(path, json.dumps({
                "run_id": run_id, "persona_id": pid, "adapter": a["label"], "finished_at": row[0],
                "compared_with": [x["label"] for x in result["adapters"]], "best": result["best"],
                "n_heldout": result["n_heldout"], "metrics": a,
            }, ensure_ascii=False, indent=1) + "\n")
    md, jl = export_paths(ws, pid, run_id)
    atomic_write(md, markdown(result))
    atomic_write(jl, jsonl(result))
    result["reports"] = {"markdown": str(md), "jsonl": str(jl)}
    return result


def export_paths(ws: Any, persona_id: str, run_id: int) -> tuple[Path, Path]:
    base = ws.exports_dir / f"eval-{persona_id}-{run_id:04d}"
    return base.with_suffix(".md"), base.with_suffix(".jsonl")


def fmt(metric: str, value: Any) -> str:
    if value is None:
        return "-"
    if metric in ("loss", "style_distance"):
        return f"{value:.4f}"
    if metric == "perplexity":
        return f"{value:.2f}"
    return f"{value:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def markdown(r: dict[str, Any]) -> str:
    out = [f"# Eval of {r['name']} ({r['persona_id']}), run {r['run_id']}", ""]
    out += [f"> warning: {w}" for w in r["warnings"]]
    out += ["", f"{r['n_heldout']} held-out conversations; best value of each metric in **bold**.", ""]
    cols = list(METRIC_LABELS)
    out.append("| rank | adapter | " + " | ".join(METRIC_LABELS[c] for c in cols) + " |")
    out.append("|---|---|" + "---|" * len(cols))
    for a in r["adapters"]:
        cells = [f"**{fmt(c, a.get(c))}**" if r["best"].get(c) == a["label"] else fmt(c, a.get(c)) for c in cols]
        out.append(f"| {a['rank']} | {a['label']} | " + " | ".join(cells) + " |")
    judged = [a for a in r["adapters"] if a.get("judge_win_rate") is not None]
    if judged:
        out += ["", "Pairwise judge, win rate against the base model (95% bootstrap interval):", ""]
        out += [f"- {a['label']}: {100 * a['judge_win_rate']:.0f}% of {a['judge_n']} "
                f"({100 * a['judge_ci_low']:.0f}-{100 * a['judge_ci_high']:.0f}%)" for a in judged]
    if r.get("catchphrases"):
        out += ["", "Catch-phrases of the real person: " + ", ".join(f"`{p}`" for p in r["catchphrases"])]
    labels = [a["label"] for a in r["adapters"]]
    out += ["", "## Probe questions", "", "| question | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for p in r["probes"]:
        out.append(f"| {_cell(p['question'])} | " + " | ".join(_cell(p["replies"][x]) for x in labels) + " |")
    out += ["", "## Held-out replies", ""]
    for i, it in enumerate(r["items"], 1):
        last = next((m["content"] for m in reversed(it["history"]) if m["role"] == "user"), "")
        out += [f"### {i}. {_cell(last)[:120]}", "", f"- **real**: {_cell(it['real'])}"]
        out += [f"- {x}: {_cell(it['replies'][x])}" for x in labels]
        out.append("")
    return "\n".join(out) + "\n"


def jsonl(r: dict[str, Any]) -> str:
    rows = [{"kind": "adapter", **a} for a in r["adapters"]]
    rows += [{"kind": "heldout", **it} for it in r["items"]]
    rows += [{"kind": "probe", **p} for p in r["probes"]]
    return "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows)


def runs(ws: Any, persona_id: str) -> list[dict[str, Any]]:
    """Every run of a persona, newest first (without the report body)."""
    store = ws.store()
    try:
        rows = store.query("SELECT id, state, adapters, error, started_at, finished_at FROM eval_runs"
                           " WHERE persona_id = ? ORDER BY id DESC", (persona_id,))
    finally:
        store.close()
    return [{**dict(r), "adapters": json.loads(r["adapters"])} for r in rows]


def latest(ws: Any, persona_id: str) -> dict[str, Any] | None:
    """The newest completed run's whole result, or None."""
    store = ws.store()
    try:
        rows = store.query("SELECT report, finished_at FROM eval_runs WHERE persona_id = ? AND state = 'done'"
                           " ORDER BY id DESC LIMIT 1", (persona_id,))
    finally:
        store.close()
    if not rows:
        return None
    return {**json.loads(rows[0]["report"]), "finished_at": rows[0]["finished_at"]}
