"""Merge a persona's LoRA adapter into its base model: one standalone model directory.

The base is reloaded in 16-bit (or fp32) from `model.name_or_path`, never taken from a 4-bit
training run: folding LoRA deltas into NF4 weights would re-quantize them and lose most of
what the adapter learned. The result is plain transformers (no peft needed to load it) and
servable by `vllm serve OUT`.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from persona_studio.export.adapter import AdapterRef, resolve_adapter
from persona_studio.export.files import ExportError, Progress, no_progress, staged_dir
from persona_studio.workspace import Workspace

DTYPES = ("bfloat16", "float16", "float32")
CARD_FILE = "persona_studio_export.json"


def merge_adapter(
    ws: Workspace,
    persona_id: str,
    out_dir: str | Path,
    version: str | None = None,
    dtype: str = "bfloat16",
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Write base + adapter merged into `out_dir` (safetensors, tokenizer, model card)."""
    progress = progress or no_progress
    if dtype not in DTYPES:
        raise ExportError(f"dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    ref = resolve_adapter(ws, persona_id, version)
    out = Path(out_dir).expanduser()
    trust = ws.settings.model.trust_remote_code
    from persona_studio import basemodel

    # The one resolver: a built-in model is converted here on first use; a missing one is one line.
    try:
        base = basemodel.ensure(ws, progress=lambda msg, _frac: progress(msg, 0.0))
    except basemodel.BaseModelError as exc:
        raise ExportError(str(exc)) from None
    _refuse_quantized_base(base)

    with staged_dir(out, force=force) as tmp:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        progress(f"loading base model {base} ({dtype})", 0.0)
        # The tokenizer saved beside the adapter (if training saved one) wins: it may carry the
        # chat template the persona was trained with.
        tok_src = ref.path if (ref.path / "tokenizer_config.json").exists() else base
        try:
            model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype), trust_remote_code=trust)
            tokenizer = AutoTokenizer.from_pretrained(str(tok_src), trust_remote_code=trust)
        except (OSError, ValueError) as exc:
            raise ExportError(f"model.name_or_path {base!r}: cannot load the base model ({_first_line(exc)})") from None
        if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
            raise ExportError(f"model.name_or_path {base!r}: loaded quantized; merge needs the 16-bit base")
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))

        progress(f"loading adapter {ref.persona_id}/{ref.version}", 0.35)
        try:
            peft_model = PeftModel.from_pretrained(model, str(ref.path))
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ExportError(f"{ref.path}: cannot apply the adapter to {base} ({_first_line(exc)})") from None

        progress("merging", 0.55)
        merged = peft_model.merge_and_unload()
        merged = merged.to(getattr(torch, dtype))

        progress(f"saving to {out}", 0.7)
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        card = _card(ws, ref, ws.settings.model.name_or_path if basemodel.is_builtin(ws) else base, dtype)
        (tmp / CARD_FILE).write_text(json.dumps(card, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(_readme(card), encoding="utf-8")
        progress("done", 1.0)
    return out


def _refuse_quantized_base(base: str) -> None:
    cfg = Path(base).expanduser() / "config.json"
    if not cfg.is_file():
        return  # a hub name: transformers will tell if it cannot be loaded
    try:
        raw = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{cfg}: unreadable model config ({exc})") from None
    if isinstance(raw, dict) and raw.get("quantization_config"):
        method = raw["quantization_config"].get("quant_method", "quantized")
        raise ExportError(
            f"{cfg}: quantization_config: the base is a {method} checkpoint; "
            "point model.name_or_path at the 16-bit base to merge"
        )


def _card(ws: Workspace, ref: AdapterRef, base: str, dtype: str) -> dict:
    name = ref.persona_id
    try:
        from persona_studio.persona.card import load_persona

        name = load_persona(ws, ref.persona_id).name
    except Exception:  # a broken persona.jsonc must not stop an export of its weights
        pass
    spec_path = ref.path / "train_spec.json"
    spec = {}
    if spec_path.is_file():
        try:
            spec = json.loads(spec_path.read_text(encoding="utf-8"))
        except ValueError:
            spec = {}
    weights = ref.path / "adapter_model.safetensors"
    return {
        "format": "persona-studio merged model",
        "persona": {"id": ref.persona_id, "name": name},
        "base_model": base,
        "adapter": {
            "version": ref.version,
            "rank": ref.config.get("r"),
            "lora_alpha": ref.config.get("lora_alpha"),
            "target_modules": ref.config.get("target_modules"),
            "sha256": _sha256(weights) if weights.is_file() else None,
        },
        "train_spec": {k: spec.get(k) for k in ("job_id", "n_samples", "created_at") if k in spec},
        "dtype": dtype,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _readme(card: dict) -> str:
    p, a = card["persona"], card["adapter"]
    return (
        f"# {p['name']} — merged persona model\n\n"
        f"- persona: `{p['id']}`\n"
        f"- base model: `{card['base_model']}`\n"
        f"- adapter: `{p['id']}/{a['version']}` (LoRA rank {a['rank']}), merged with peft `merge_and_unload()`\n"
        f"- weights dtype: {card['dtype']}\n"
        f"- exported: {card['exported_at']} by persona-studio\n\n"
        "Load it with plain transformers (`AutoModelForCausalLM.from_pretrained(DIR)`), "
        "or serve it with `vllm serve DIR`.\n"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
