"""One eval run: every chosen adapter (and the base model) on the persona's held-out set.

    1. check everything that can be refused (persona, adapter versions, held-out set) first;
    2. held-out loss/perplexity, teacher-forced (loss.py), one base model for all adapters;
    3. one engine start, then every reply at once: each held-out history and each probe question,
       for every adapter (generate.py), greedy with a fixed seed;
    4. reference overlap and style distance per adapter (metrics.py), a rank, the best per metric;
    5. stored (report.py): SQLite, adapters/<v>/eval.json, a markdown + JSONL report.

The run row is written as 'running' first and becomes 'done' with its scores in one
transaction at the end; a cancelled or failed run keeps no scores and no eval.json.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_studio import adapters as adapters_mod
from persona_studio.errors import UserError
from persona_studio.eval import heldout, metrics
from persona_studio.eval.generate import Cancelled, generate_all

# progress(stage, done, total)
Progress = Callable[[str, int, int], None]

# The metrics a table shows, and which way is better.
HIGHER_BETTER = {"loss": False, "perplexity": False, "bleu": True, "chrf": True, "rouge_l": True,
                 "style_distance": False}


class EvalError(UserError, ValueError):
    """A one-line reason an eval cannot run."""


@dataclass
class Plan:
    persona_id: str
    name: str
    system: str
    adapters: list[tuple[str, Path | None]]  # (label, directory or None for the base model)
    conversations: list[list[dict[str, str]]]  # full held-out conversations (for the loss)
    items: list[dict[str, Any]]  # {"history": messages, "real": reply}
    probes: list[str]
    phrases: list[str]
    warnings: list[str] = field(default_factory=list)


def parse_adapters(ws: Any, persona_id: str, spec: str | None) -> list[tuple[str, Path | None]]:
    """'base,v0001,current' or 'all' (default: the base model and every version)."""
    known = adapters_mod.versions(ws, persona_id)
    names = [s.strip() for s in (spec or "all").split(",") if s.strip()]
    out: list[tuple[str, Path | None]] = []
    for n in names:
        if n == "all":
            picked = ["base", *known]
        elif n == "current":
            cur = adapters_mod.current_version(ws, persona_id)
            if cur is None:
                raise EvalError(f"persona {persona_id!r}: --adapters current: the persona has no current adapter")
            picked = [cur]
        elif n == "base" or n in known:
            picked = [n]
        else:
            have = ", ".join(known) or "none yet (train one first)"
            raise EvalError(f"persona {persona_id!r}: --adapters: no adapter version {n!r} (versions: {have})")
        for p in picked:
            if p not in [label for label, _ in out]:
                path = None if p == "base" else adapters_mod.adapters_dir(ws, persona_id) / p
                if path is not None:
                    adapters_mod.read_config(path)  # a broken version is refused before anything loads
                out.append((p, path))
    if not out:
        raise EvalError("--adapters: name at least one of base, current, all or a version such as v0001")
    return out


def _trained_on(ws: Any, adapter: Path) -> set[str]:
    """The conversations an adapter's job trained on (when its job directory is still there)."""
    try:
        job_id = json.loads((adapter / "train_spec.json").read_text(encoding="utf-8"))["job_id"]
        lines = (ws.jobs_dir / job_id / "data.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    seen = set()
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("split") == "train":
            seen.add(_conv_key([m for m in row.get("messages", []) if m.get("role") != "system"]))
    return seen


def _conv_key(turns: list[dict[str, str]]) -> str:
    return json.dumps([[t["role"], t["content"]] for t in turns], ensure_ascii=False)


def plan(ws: Any, persona_id: str, adapter_spec: str | None = None, limit: int | None = None) -> Plan:
    """Everything the run needs, or one EvalError line; reads files and the store only."""
    from persona_studio.train.identity import is_chinese, load_card

    card = load_card(ws, persona_id)
    chosen = parse_adapters(ws, persona_id, adapter_spec)
    split = heldout.persona_split(ws, persona_id)
    if not split.train and not split.held:
        raise EvalError(f"{ws.db_path}: persona {persona_id!r} has no usable samples (import chats and run make-dataset)")
    if not split.held:
        raise EvalError(
            f"persona {persona_id!r}: {len(split.train)} usable samples are too few for a held-out set "
            f"(it takes at most a fifth of them; import more chats)"
        )
    warnings = list(split.warnings)
    leaked: set[str] = set()
    for _label, path in chosen:
        if path is not None:
            leaked |= _trained_on(ws, path)
    held = [s for s in split.held if _conv_key(s["turns"]) not in leaked]
    if len(held) < len(split.held):
        warnings.append(f"{len(split.held) - len(held)} held-out conversation(s) left out: an adapter trained on them "
                        "(it was trained before the held-out set took them)")
    if limit is not None:
        held = held[:limit]
    if not held:
        raise EvalError(f"persona {persona_id!r}: no held-out conversation is left to evaluate on")
    system = card.system_prompt
    convs, items = [], []
    for s in held:
        msgs = ([{"role": "system", "content": s["system"] or system}]) + s["turns"]
        convs.append(msgs)
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        if any(m["role"] == "user" for m in msgs[:last]):
            items.append({"history": msgs[:last], "real": msgs[last]["content"]})
    replies = [t["content"] for s in split.train + split.held for t in s["turns"] if t["role"] == "assistant"]
    others = [t["content"] for s in split.train + split.held for t in s["turns"] if t["role"] == "user"]
    zh = is_chinese(" ".join(replies[:200]))
    return Plan(
        persona_id=persona_id,
        name=card.name,
        system=system,
        adapters=chosen,
        conversations=convs,
        items=items,
        probes=list(ws.settings.eval.probes_zh if zh else ws.settings.eval.probes_en),
        phrases=metrics.catchphrases(replies, others),
        warnings=warnings,
    )


def requests(p: Plan, ws: Any) -> list[Any]:
    """Every reply the run needs: adapters x (held-out items + probes), greedy, fixed seed."""
    from persona_studio.engine.base import GenRequest, Sampling

    e = ws.settings.eval
    # Greedy with no repetition penalty: the same reply from every engine, run after run.
    sampling = Sampling(temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=e.max_new_tokens, seed=e.seed)
    prompts = [it["history"] for it in p.items]
    prompts += [[{"role": "system", "content": p.system}, {"role": "user", "content": q}] for q in p.probes]
    return [GenRequest(list(m), p.persona_id, path, sampling) for _label, path in p.adapters for m in prompts]


def score(p: Plan, losses: dict[str, dict[str, Any]], replies: list[str]) -> dict[str, Any]:
    """Metrics per adapter, the rank, the best adapter per metric, and the side-by-side rows."""
    n_items, n_probes = len(p.items), len(p.probes)
    per = n_items + n_probes
    refs = [it["real"] for it in p.items]
    results: dict[str, dict[str, Any]] = {}
    for k, (label, _path) in enumerate(p.adapters):
        gen = replies[k * per: k * per + n_items]
        ref = metrics.reference_scores(gen, refs)
        style = metrics.style_distance(gen, refs, p.phrases)
        results[label] = {
            **{m: losses.get(label, {}).get(m) for m in ("loss", "perplexity")},
            **{m: ref[m] for m in ("bleu", "chrf", "rouge_l")},
            "style_distance": style["style_distance"],
            **{f"style_{part}": v for part, v in style["parts"].items()},
            "phrase_recall": style.get("phrase_recall"),
            "bleu_tokenizer": ref["bleu_tokenizer"],
            "style_profile": style["generated"],
        }
    best = {}
    for m, up in HIGHER_BETTER.items():
        vals = [(v, label) for label, r in results.items() if (v := r.get(m)) is not None]
        if vals:
            best[m] = (max if up else min)(vals)[1]
    ranking = _rank(results)
    return {
        "adapters": [{"label": label, "rank": ranking.index(label) + 1, **results[label]} for label in ranking],
        "best": best,
        "real_style": metrics.style_profile(refs),
        "catchphrases": p.phrases,
        "items": [
            {"history": it["history"], "real": it["real"],
             "replies": {label: replies[k * per + i] for k, (label, _) in enumerate(p.adapters)}}
            for i, it in enumerate(p.items)
        ],
        "probes": [
            {"question": q, "replies": {label: replies[k * per + n_items + j] for k, (label, _) in enumerate(p.adapters)}}
            for j, q in enumerate(p.probes)
        ],
    }


def _rank(results: dict[str, dict[str, Any]]) -> list[str]:
    """Labels ordered by their mean rank over the table's metrics (ties: lower loss first)."""
    ranks: dict[str, list[int]] = {label: [] for label in results}
    for m, up in HIGHER_BETTER.items():
        vals = sorted(((v, label) for label, r in results.items() if (v := r.get(m)) is not None), reverse=up)
        for pos, (_v, label) in enumerate(vals):
            ranks[label].append(pos)
    inf = float("inf")
    return sorted(results, key=lambda label: (statistics.fmean(ranks[label]) if ranks[label] else inf,
                                              results[label].get("loss") or inf))


def run_eval(
    ws: Any,
    persona_id: str,
    adapter_spec: str | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    engine: Any | None = None,
    engine_cm: Callable[[], Any] | None = None,
    judge: bool = False,
) -> dict[str, Any]:
    """Run, store and return one eval (raises EvalError/EngineError before anything is stored).

    The engine: `engine` when one is running already (the studio's), else `engine_cm()` (a context
    manager giving a started engine, e.g. the CLI's command_engine), else one made here and closed
    after. It starts only after the loss pass, so the two never hold a GPU's memory at once."""
    from persona_studio.eval import report

    progress = progress or (lambda _s, _d, _t: None)
    p = plan(ws, persona_id, adapter_spec, limit)
    if judge and "base" not in [label for label, _ in p.adapters]:
        raise EvalError("--judge compares each adapter with the base model: include base in --adapters")
    run_id = report.start_run(ws, p)
    try:
        t = ws.settings.train_sft_args
        from persona_studio.engine import _model_path

        progress("loss", 0, len(p.adapters))
        losses = heldout_losses_for(ws, p, _model_path(ws), t.cutoff_len, lambda d, n: progress("loss", d, n), cancel)
        reqs = requests(p, ws)
        progress("engine", 0, 1)
        with (contextlib.nullcontext(engine) if engine is not None else (engine_cm or _own_engine(ws))()) as eng:
            progress("generate", 0, len(reqs))
            replies = generate_all(eng, reqs, lambda d, n: progress("generate", d, n), cancel)
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        result = {"run_id": run_id, "persona_id": persona_id, "name": p.name, "warnings": p.warnings,
                  "n_heldout": len(p.conversations), "n_items": len(p.items), **score(p, losses, replies)}
        if judge:
            from persona_studio.eval.judge import judge_all

            progress("judge", 0, 1)
            wins = judge_all(ws, p.name, result["items"], [label for label, _ in p.adapters], ws.settings.eval.seed)
            for a in result["adapters"]:
                a.update(wins.get(a["label"], {}))
            if cancel is not None and cancel.is_set():
                raise Cancelled()
        return report.finish_run(ws, run_id, result)
    except Cancelled:
        report.end_run(ws, run_id, "cancelled", None)
        raise
    except BaseException as exc:
        state = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        report.end_run(ws, run_id, state, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise


def _own_engine(ws: Any) -> Callable[[], Any]:
    @contextlib.contextmanager
    def cm() -> Iterator[Any]:
        from persona_studio.engine import make_engine

        eng = make_engine(ws)
        try:
            eng.start(lambda _msg, _frac: None)
            yield eng
        finally:
            # a service this run started goes again unless settings keep it running
            if getattr(eng, "started_service", False) and not ws.settings.engine.keep_running:
                eng.stop_service()
            else:
                eng.close()

    return cm


def heldout_losses_for(ws: Any, p: Plan, base: str, cutoff_len: int, progress: Callable[[int, int], None],
                       cancel: threading.Event | None) -> dict[str, dict[str, Any]]:
    from persona_studio.eval.loss import heldout_losses

    m = ws.settings.model
    return heldout_losses(base, p.conversations, p.adapters, cutoff_len=cutoff_len, dtype=m.dtype,
                          trust_remote_code=m.trust_remote_code, progress=progress, cancel=cancel)
