"""Every kind of export the studio offers, behind one call: what the Export screen runs.

Kind ids: `model`, `adapter`, `adapter-zip`, `dataset:<fmt>`, `card:<v2|v3>`, `serve`. Dataset and
card kinds appear only when their modules are present, so the screen never offers what cannot run.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
from pathlib import Path

from persona_studio import adapters
from persona_studio.export.files import ExportError, Progress, check_destination, no_progress, staged_file
from persona_studio.workspace import Workspace


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def available_kinds() -> list[tuple[str, str]]:
    """(label, kind id) pairs in menu order."""
    kinds = [
        ("merged model (safetensors)", "model"),
        ("LoRA adapter (folder)", "adapter"),
        ("LoRA adapter (.zip)", "adapter-zip"),
    ]
    if _has("persona_studio.export.dataset"):
        kinds += [(f"dataset · {name}", f"dataset:{fmt}")
                  for name, fmt in (("OpenAI JSONL", "openai"), ("ShareGPT", "sharegpt"), ("Alpaca", "alpaca"))]
    if _has("persona_studio.persona.card"):
        kinds += [("character card V2 (PNG)", "card:v2"), ("character card V3 (PNG)", "card:v3")]
    kinds.append(("vllm serve command (script)", "serve"))
    return kinds


def default_out(ws: Workspace, kind: str, persona_id: str) -> Path:
    """Where an export goes unless the user says otherwise (under .studio/exports/)."""
    version = adapters.current_version(ws, persona_id) if persona_id else None
    tag = f"-{version}" if version else ""
    d = ws.exports_dir
    if kind == "model":
        return d / f"{persona_id}-merged{tag}"
    if kind == "adapter":
        return d / f"{persona_id}-adapter{tag}"
    if kind == "adapter-zip":
        return d / f"{persona_id}-adapter{tag}.zip"
    if kind.startswith("dataset:"):
        return d / f"{persona_id}.{kind.split(':', 1)[1]}.jsonl"
    if kind.startswith("card:"):
        return d / f"{persona_id}.{kind.split(':', 1)[1]}.png"
    if kind == "serve":
        return d / "serve.sh"
    raise ExportError(f"export kind {kind!r}: unknown")


def run_export(
    ws: Workspace, kind: str, persona_id: str, out: Path, *, force: bool = False, progress: Progress | None = None
) -> str:
    """Run one export; returns a one-line summary. Raises UserError (one line) on bad input."""
    progress = progress or no_progress
    if kind == "model":
        from persona_studio.export.merge import merge_adapter

        path = merge_adapter(ws, persona_id, out, force=force, progress=progress)
        return f"merged {persona_id}/{adapters.current_version(ws, persona_id)} into {path}"
    if kind in ("adapter", "adapter-zip"):
        from persona_studio.export.adapter import export_adapter

        s = export_adapter(ws, persona_id, out, force=force)
        return f"exported adapter {s['persona']}/{s['version']} ({len(s['files'])} files) to {s['out']}"
    if kind.startswith("dataset:"):
        from persona_studio.export.dataset import export_dataset

        check_destination(out, force=force, want_dir=False)
        s = export_dataset(ws, persona_id, kind.split(":", 1)[1], out)
        return f"wrote {s['written']} samples ({s['format']}) to {s['path']}"
    if kind.startswith("card:"):
        from persona_studio.persona.card import load_persona, to_card_v2, to_card_v3, write_card_png

        check_destination(out, force=force, want_dir=False)
        p = load_persona(ws, persona_id)
        card = to_card_v3(p) if kind == "card:v3" else to_card_v2(p)
        avatar = ws.persona_dir(p.id) / "avatar.png"
        write_card_png(card, out, avatar.read_bytes() if avatar.exists() else None)
        return f"wrote {kind.split(':', 1)[1].upper()} card of {p.name} to {out}"
    if kind == "serve":
        return write_serve_script(ws, out, force=force)
    raise ExportError(f"export kind {kind!r}: unknown")


def write_serve_script(ws: Workspace, out: Path, *, force: bool = False) -> str:
    """A shell script that runs `vllm serve` with every persona's adapter."""
    from persona_studio.export.serve import executable_argv, plan_serve

    plan = plan_serve(ws)
    argv = executable_argv(plan.argv)
    lines = ["#!/bin/sh", "# Written by persona-studio: serve the base model with every persona's adapter."]
    lines += [f"# skipped {s['persona']}: {s['reason']}" for s in plan.skipped]
    lines.append("exec " + shlex.join(argv) + ' "$@"')
    with staged_file(out, force=force) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
    names = ", ".join(a["persona"] for a in plan.served) or "no adapters"
    return f"wrote {out} (serves {names}): {shlex.join(plan.argv)}"
