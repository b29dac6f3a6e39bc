"""Preference jobs (`train --method dpo|orpo`): refused up front, then the same job directory as SFT.

    .studio/jobs/<job_id>/data.jsonl   one pair per line: {split, source, pair_id, messages, chosen, rejected}
    .studio/jobs/<job_id>/spec.json    method, pref settings, the starting adapter, pairs per source

The worker, queue, checkpoints, cancel and resume are SFT's (train/jobs.py, train/worker.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from persona_studio import adapters
from persona_studio.settings import TrainSftArgs
from persona_studio.train import data as data_mod
from persona_studio.train import jobs
from persona_studio.train import spec as spec_mod
from persona_studio.train.identity import load_card
from persona_studio.workspace import Workspace, check_persona_id

METHODS = ("dpo", "orpo")


def starting_adapter(ws: Workspace, persona_id: str) -> tuple[Path, spec_mod.TrainSpec | None]:
    """The persona's current adapter and the spec it was trained with (None if it has none beside it)."""
    current = adapters.current(ws, persona_id)
    if current is None:
        raise spec_mod.TrainError(
            f"persona {persona_id!r} has no SFT adapter yet: a preference run starts from one"
            f" (train it first: `persona-studio train --persona {persona_id}`)"
        )
    adapters.read_config(current)  # a damaged adapter directory is refused here, in one line
    spec_path = current / "train_spec.json"
    return current, (spec_mod.load(spec_path) if spec_path.exists() else None)


def create_pref_job(ws: Workspace, persona_id: str, method: str) -> Path:
    from persona_studio.prefs import store as prefs

    check_persona_id(persona_id)
    if method not in METHODS:
        raise spec_mod.TrainError(f"--method {method!r}: choose sft, {' or '.join(METHODS)}")
    card = load_card(ws, persona_id)
    p = ws.settings.train_pref_args
    adapter, made_with = starting_adapter(ws, persona_id)
    base = spec_mod.check_base_model(ws.settings.model.name_or_path, ws.root)
    if made_with is not None and made_with.base_model != base:
        raise spec_mod.TrainError(
            f"{adapter}: trained on {made_with.base_model}, but model.name_or_path is now {base}"
            " (a preference run continues an adapter on the base it was trained on)"
        )
    with ws.store() as store:
        pairs = prefs.training_pairs(store, persona_id, tuple(p.sources), ws.settings.make_dataset.pii)
    if len(pairs) < p.min_pairs:
        raise spec_mod.TrainError(
            f"persona {persona_id!r}: {len(pairs)} usable preference pair(s), a {method} run needs at least"
            f" {p.min_pairs} (train_pref_args.min_pairs); edit or swipe replies in chat, edit replies in review,"
            " or import a DPO/KTO file"
        )
    sft_args = made_with.train if made_with is not None else _args_from_adapter(ws, adapter)
    device, n_gpus, dtype = spec_mod.resolve_hardware(ws.settings.model.dtype)
    spec_mod.check_memory(base, sft_args.quantization, dtype, device)
    sources: dict[str, int] = {}
    for pr in pairs:
        sources[pr.source] = sources.get(pr.source, 0) + 1
    rows = [{"split": "train", "source": pr.source, "pair_id": pr.id, "messages": pr.messages(card.system_prompt),
             "chosen": pr.chosen, "rejected": pr.rejected} for pr in pairs]
    job_id = jobs._new_job_id(ws, persona_id)
    spec = spec_mod.TrainSpec(
        job_id=job_id, persona_id=persona_id, workspace=str(ws.root), base_model=base,
        trust_remote_code=ws.settings.model.trust_remote_code, device=device,
        num_gpus=min(n_gpus, 1),  # one process: the preference loop has no multi-GPU path
        dtype=dtype, train=sft_args, created_at=jobs.now_iso(), method=method, pref=p, sft_adapter=str(adapter),
        n_pairs=len(pairs), pair_sources=sources,
    )
    spec_mod.validate(spec, str(ws.settings_path))
    job_dir = ws.jobs_dir / job_id
    job_dir.mkdir(parents=True)
    data_mod.write_jsonl(job_dir / "data.jsonl", rows)
    spec_mod.save(spec, job_dir / "spec.json")
    jobs.write_status(job_dir, job_id=job_id, persona_id=persona_id, state="queued", pid=None, error=None,
                      created_at=spec.created_at, queued_at=spec.created_at, step=0, total_steps=0, adapter=None,
                      method=method)
    return job_dir


def _args_from_adapter(ws: Workspace, adapter: Path) -> TrainSftArgs:
    """An adapter made elsewhere (no train_spec.json): its LoRA shape from adapter_config.json."""
    import dataclasses

    cfg = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    target = cfg.get("target_modules") or list(ws.settings.train_sft_args.lora_target)
    return dataclasses.replace(
        ws.settings.train_sft_args, lora_rank=int(cfg["r"]), lora_alpha=int(cfg.get("lora_alpha") or cfg["r"]),
        lora_target=sorted(target) if isinstance(target, list) else [str(target)],
    )


def job_pairs(job_dir: str | Path) -> dict[str, int]:
    """Pairs per source that went into a preference job ({} for an SFT job or an unreadable spec)."""
    try:
        s = spec_mod.load(Path(job_dir) / "spec.json")
    except spec_mod.TrainError:
        return {}
    return dict(s.pair_sources) if s.method != "sft" else {}
