"""Samples -> a JSONL training file: OpenAI chat, ShareGPT or Alpaca, one sample per line.

openai:   {"messages": [{"role": "system", ...}, {"role": "user", "content": ..., "name"?: ...}, ...]}
sharegpt: {"conversations": [{"from": "human"|"gpt", "value": ...}, ...], "system": ...}
alpaca:   {"instruction": last user turn, "input": "", "output": last reply, "system": ...,
           "history": [[user, reply], ...]}  (LLaMA-Factory's multi-turn alpaca)
Which samples: by default the ones training would use — accepted, plus pending while nothing
of the persona was ever scored; never rejected.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from persona_studio.errors import UserError

FORMATS = ("openai", "sharegpt", "alpaca")
STATUS_CHOICES = ("usable", "accepted", "pending", "all")


class ExportError(UserError, ValueError):
    pass


def statuses(store: Any, persona_id: str, which: str) -> tuple[str, ...]:
    if which == "all":
        return ("pending", "accepted", "rejected")
    if which != "usable":
        return (which,)
    scored = store.query(
        "SELECT 1 FROM scores JOIN samples ON samples.id = scores.sample_id WHERE samples.persona_id = ? LIMIT 1",
        (persona_id,),
    )
    return ("accepted",) if scored else ("accepted", "pending")


def to_openai(system: str, turns: list[dict[str, Any]]) -> dict[str, Any]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for t in turns:
        m = {"role": t["role"], "content": t["content"]}
        if t.get("name"):
            m["name"] = t["name"]
        msgs.append(m)
    return {"messages": msgs}


def to_sharegpt(system: str, turns: list[dict[str, Any]]) -> dict[str, Any]:
    conv = [{"from": "human" if t["role"] == "user" else "gpt", "value": t["content"]} for t in turns]
    out: dict[str, Any] = {"conversations": conv}
    if system:
        out["system"] = system
    return out


def to_alpaca(system: str, turns: list[dict[str, Any]]) -> dict[str, Any]:
    # Pair each reply with the user turn before it ("" when the persona spoke first).
    pairs: list[list[str]] = []
    pending_user = ""
    for t in turns:
        if t["role"] == "user":
            pending_user = f"{pending_user}\n{t['content']}" if pending_user else t["content"]
        else:
            pairs.append([pending_user, t["content"]])
            pending_user = ""
    if not pairs:
        return {}
    instruction, output = pairs[-1]
    out: dict[str, Any] = {"instruction": instruction, "input": "", "output": output}
    if system:
        out["system"] = system
    if len(pairs) > 1:
        out["history"] = pairs[:-1]
    return out


_CONVERT = {"openai": to_openai, "sharegpt": to_sharegpt, "alpaca": to_alpaca}


def export_dataset(ws: Any, persona_id: str, fmt: str, out: str | Path, which: str = "usable",
                   progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    from persona_studio.importer import check_persona
    from persona_studio.workspace import atomic_write

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    check_persona(ws, persona_id)
    out = Path(out).expanduser()
    if out.is_dir():
        raise ExportError(f"{out}: is a directory; give a file name like {out / (persona_id + '.jsonl')}")
    store = ws.store()
    try:
        sts = statuses(store, persona_id, which)
        rows = store.query(
            f"SELECT id, system, turns FROM samples WHERE persona_id = ? AND status IN ({','.join('?' * len(sts))})"
            " ORDER BY id",
            (persona_id, *sts),
        )
    finally:
        store.close()
    convert = _CONVERT[fmt]
    lines, skipped = [], 0
    for i, row in enumerate(rows, 1):
        if progress is not None and not i & 0xFFF:
            progress(i, len(rows))
        rec = convert(row["system"], json.loads(row["turns"]))
        if not rec:
            skipped += 1
            continue
        lines.append(json.dumps(rec, ensure_ascii=False))
    if progress is not None:
        progress(len(rows), len(rows))
    atomic_write(out, "\n".join(lines) + ("\n" if lines else ""))
    return {"persona": persona_id, "format": fmt, "statuses": list(sts), "written": len(lines),
            "skipped": skipped, "path": str(out)}
