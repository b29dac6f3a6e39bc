"""Workspaces with personas and real peft LoRA adapters on the tiny Llama, for export tests."""

from __future__ import annotations

import json
from pathlib import Path

from persona_studio import adapters
from persona_studio.workspace import Workspace

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def model_workspace(root: Path, tiny_model: Path, extra: dict | None = None) -> Workspace:
    """A workspace whose base model is the tiny Llama."""
    ws = Workspace.init(root)
    cfg = {"model": {"name_or_path": str(tiny_model)}, **(extra or {})}
    ws.settings_path.write_text(json.dumps(cfg), encoding="utf-8")
    return Workspace.open(root)


def add_persona(ws: Workspace, persona_id: str, name: str | None = None) -> None:
    from persona_studio.persona.card import Persona, save_persona

    save_persona(ws, Persona(id=persona_id, name=name or persona_id.title()))


def install_adapter(
    ws: Workspace,
    persona_id: str,
    tiny_model: Path,
    *,
    r: int = 8,
    seed: int = 0,
    modules_to_save: list[str] | None = None,
) -> Path:
    """Save a LoRA with random non-zero lora_B (so it changes the logits) as the persona's next version."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    cfg = LoraConfig(
        r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM",
        modules_to_save=modules_to_save,
    )
    model = get_peft_model(base, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # peft starts lora_B at zero: the adapter would be a no-op
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    out = adapters.new_version_dir(ws, persona_id)
    model.save_pretrained(out)
    (out / "train_spec.json").write_text(
        json.dumps({"job_id": f"test-{persona_id}", "persona_id": persona_id, "n_samples": 1}), encoding="utf-8"
    )
    adapters.set_current(ws, persona_id, out.name)
    return out


def alice_workspace(root: Path, tiny_model: Path) -> Workspace:
    """A workspace with persona alice and one adapter version (v0001, current)."""
    ws = model_workspace(root, tiny_model)
    add_persona(ws, "alice")
    install_adapter(ws, "alice", tiny_model, seed=1)
    return ws
