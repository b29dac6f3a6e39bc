"""`export model`: merge a real peft LoRA into the tiny Llama and check the result with plain transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from persona_studio import adapters
from persona_studio.cli import main
from persona_studio.export.files import ExportError
from persona_studio.export.merge import merge_adapter
from tests.export_helpers import add_persona, alice_workspace


@pytest.fixture
def ws(tmp_path: Path, tiny_model: Path):
    ws = alice_workspace(tmp_path / "ws", tiny_model)
    return ws


def _logits(model: Any, tok: Any) -> Any:
    import torch

    ids = tok.apply_chat_template([{"role": "user", "content": "Who are you?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_model_loads_without_peft_and_matches_the_adapter(ws, tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps: list[str] = []
    out = merge_adapter(ws, "alice", tmp_path / "merged", dtype="float32", progress=lambda m, f: steps.append(m))
    assert out == tmp_path / "merged"
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    assert not list(out.glob("adapter_*")), "a merged model must not need the adapter"
    assert [s.split()[0] for s in steps] == ["loading", "loading", "merging", "saving", "done"]

    card = json.loads((out / "persona_studio_export.json").read_text())
    assert card["base_model"] == str(tiny_model)
    assert card["adapter"]["version"] == "v0001" and card["adapter"]["rank"] == 8
    assert card["persona"] == {"id": "alice", "name": "Alice"}
    assert "alice/v0001" in (out / "README.md").read_text()

    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.chat_template == AutoTokenizer.from_pretrained(str(tiny_model)).chat_template
    merged = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    assert not any("lora" in k for k in merged.state_dict())

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    base_logits = _logits(base, tok)
    peft_model = PeftModel.from_pretrained(base, str(adapters.current(ws, "alice")))
    peft_logits = _logits(peft_model, tok)
    merged_logits = _logits(merged, tok)
    assert torch.allclose(merged_logits, peft_logits, atol=1e-4)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-3)


def test_bfloat16_merge_saves_bfloat16_weights(ws, tmp_path: Path) -> None:
    from safetensors import safe_open

    out = merge_adapter(ws, "alice", tmp_path / "bf16")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
    assert dtypes == {"BF16"}
    assert json.loads((out / "persona_studio_export.json").read_text())["dtype"] == "bfloat16"


def test_existing_output_is_refused_then_replaced_with_force(ws, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists"):
        merge_adapter(ws, "alice", out, dtype="float32")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    merge_adapter(ws, "alice", out, dtype="float32", force=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_errors_are_one_line_and_leave_nothing(ws, tmp_path: Path) -> None:
    add_persona(ws, "bob")
    with pytest.raises(ExportError, match="persona 'bob': has no trained adapter"):
        merge_adapter(ws, "bob", tmp_path / "m1")
    with pytest.raises(ExportError, match="no adapter version 'v0009'"):
        merge_adapter(ws, "alice", tmp_path / "m2", version="9")
    with pytest.raises(ExportError, match="no such persona"):
        merge_adapter(ws, "carol", tmp_path / "m3")
    good_base = ws.settings.model.name_or_path
    ws.settings.model.name_or_path = str(tmp_path / "no-such-model")
    with pytest.raises(ExportError, match="model.name_or_path: .*no-such-model: no such model directory") as info:
        merge_adapter(ws, "alice", tmp_path / "m0")
    assert "\n" not in str(info.value)
    ws.settings.model.name_or_path = good_base
    shutil.rmtree(adapters.current(ws, "alice"))
    with pytest.raises(ExportError, match="adapter directory is missing") as info:
        merge_adapter(ws, "alice", tmp_path / "m4")
    assert "\n" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["ws"]


def test_a_quantized_base_is_refused(ws, tiny_model: Path, tmp_path: Path) -> None:
    q = tmp_path / "q-base"
    shutil.copytree(tiny_model, q)
    cfg = json.loads((q / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (q / "config.json").write_text(json.dumps(cfg))
    ws.settings.model.name_or_path = str(q)
    with pytest.raises(ExportError, match="bitsandbytes checkpoint; point model.name_or_path at the 16-bit base"):
        merge_adapter(ws, "alice", tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_cli_export_model(ws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-merged"
    rc = main(["export", "model", "-w", str(ws.root), "--persona", "alice", "-o", str(out),
               "--dtype", "float32", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"] == "v0001" and summary["out"] == str(out)
    assert (out / "model.safetensors").is_file()

    rc = main(["export", "model", "-w", str(ws.root), "--persona", "alice", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "already exists (use --force" in err
