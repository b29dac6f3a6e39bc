"""Preference pairs -> a preference dataset file other trainers read.

    trl           JSONL, TRL's conversational preference format (DPOTrainer, ORPO, ...):
                  {"prompt": [messages], "chosen": [{"role": "assistant", ...}], "rejected": [...]}
    llamafactory  JSON array, LLaMA-Factory's ShareGPT ranking format:
                  {"conversations": [{"from": "human"|"gpt", "value"}], "system", "chosen": {"from": "gpt", ...},
                   "rejected": {...}}; register it in dataset_info.json with the `dataset_info` entry
                  the summary carries.

The pairs are the ones training would use (redacted by the current PII rules, no duplicates).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from persona_studio.prefs.store import SOURCES, Pair, PrefError, training_pairs
from persona_studio.workspace import Workspace, atomic_write

FORMATS = ("trl", "llamafactory")


def to_trl(p: Pair, default_system: str) -> dict[str, Any]:
    return {
        "prompt": p.messages(default_system),
        "chosen": [{"role": "assistant", "content": p.chosen}],
        "rejected": [{"role": "assistant", "content": p.rejected}],
    }


def to_llamafactory(p: Pair, default_system: str) -> dict[str, Any] | None:
    """None when the context does not end with a user turn (LLaMA-Factory needs human, gpt, ..., human)."""
    conv: list[dict[str, str]] = []
    for t in p.prompt:
        who = "human" if t["role"] == "user" else "gpt"
        if conv and conv[-1]["from"] == who:  # strict alternation: merge runs of one side
            conv[-1]["value"] += "\n" + t["content"]
        elif conv or who == "human":  # a leading persona line has no human turn to answer
            conv.append({"from": who, "value": t["content"]})
    if not conv or conv[-1]["from"] != "human":
        return None
    out: dict[str, Any] = {"conversations": conv}
    system = p.system or default_system
    if system:
        out["system"] = system
    out["chosen"] = {"from": "gpt", "value": p.chosen}
    out["rejected"] = {"from": "gpt", "value": p.rejected}
    return out


def dataset_info(name: str, file_name: str) -> dict[str, Any]:
    return {name: {"file_name": file_name, "ranking": True, "formatting": "sharegpt",
                   "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected",
                               "system": "system"}}}


def export_prefs(ws: Workspace, persona_id: str, out: Path, fmt: str, *, sources: tuple[str, ...] = SOURCES,
                 force: bool = False) -> dict[str, Any]:
    from persona_studio.importer import check_persona
    from persona_studio.train.identity import load_card

    if fmt not in FORMATS:
        raise PrefError(f"format {fmt!r}: choose {' or '.join(FORMATS)}")
    check_persona(ws, persona_id)
    if out.exists() and not force:
        raise PrefError(f"{out}: already exists (use --force to replace it)")
    system = load_card(ws, persona_id).system_prompt
    with ws.store() as store:
        pairs = training_pairs(store, persona_id, sources, ws.settings.make_dataset.pii)
    if not pairs:
        raise PrefError(f"persona {persona_id!r}: no preference pairs to export (see `persona-studio prefs list`)")
    skipped = 0
    if fmt == "trl":
        rows = [to_trl(p, system) for p in pairs]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        rows = []
        for p in pairs:
            row = to_llamafactory(p, system)
            if row is None:
                skipped += 1
            else:
                rows.append(row)
        text = json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, text)
    by_source: dict[str, int] = {}
    for p in pairs:
        by_source[p.source] = by_source.get(p.source, 0) + 1
    summary: dict[str, Any] = {"persona": persona_id, "format": fmt, "out": str(out), "pairs": len(rows),
                               "skipped": skipped, "sources": by_source}
    if fmt == "llamafactory":
        summary["dataset_info"] = dataset_info(f"{persona_id}_prefs", out.name)
    return summary
