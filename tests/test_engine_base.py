"""Engine-independent pieces: LoRA limits derived from the personas, rank rounding, adapter
checks, stop strings split across stream deltas, backend choice from settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from persona_studio import adapters
from persona_studio.engine import lora_limits, make_engine
from persona_studio.engine.base import EngineError, StopCutter, adapter_config, check_servable, round_rank
from persona_studio.persona.card import Persona, save_persona
from persona_studio.workspace import Workspace, atomic_write


def _adapter(ws: Workspace, pid: str, r: int, **cfg: object) -> Path:
    save_persona(ws, Persona(id=pid, name=pid.title()))
    d = adapters.new_version_dir(ws, pid)
    (d / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": 2 * r, **cfg}))
    (d / "adapter_model.safetensors").write_bytes(b"")  # only the config is read here
    adapters.set_current(ws, pid, d.name)
    return d


def _settings(ws: Workspace, **sections: dict) -> Workspace:
    atomic_write(ws.settings_path, json.dumps(sections))
    return Workspace.open(ws.root)


def test_round_rank_to_vllm_ranks():
    assert [round_rank(r) for r in (1, 2, 8, 9, 64, 300, 512)] == [1, 8, 8, 16, 64, 320, 512]
    with pytest.raises(EngineError, match="above the largest rank vLLM serves"):
        round_rank(600)


def test_lora_limits_follow_the_current_adapters(workspace):
    ws = workspace
    assert (lora_limits(ws).max_lora_rank, lora_limits(ws).max_loras) == (8, 1)  # nobody trained yet
    _adapter(ws, "alice", 8)
    _adapter(ws, "bob", 12)  # rounds up to 16
    _adapter(ws, "carol", 4)
    save_persona(ws, Persona(id="dave", name="Dave"))  # no adapter: base model, not counted
    lim = lora_limits(ws)
    assert (lim.max_lora_rank, lim.max_loras, lim.max_cpu_loras) == (16, 3, 6)


def test_lora_limits_settings_override_when_non_zero(workspace):
    _adapter(workspace, "alice", 8)
    ws = _settings(workspace, vllm_args={"max_lora_rank": 64, "max_loras": 4, "max_cpu_loras": 2})
    lim = lora_limits(ws)
    # max_cpu_loras below max_loras would be rejected by vLLM: it is raised to max_loras
    assert (lim.max_lora_rank, lim.max_loras, lim.max_cpu_loras) == (64, 4, 4)


def test_adapter_checks_are_one_line(workspace, tmp_path):
    d = _adapter(workspace, "alice", 16, modules_to_save=["lm_head"])
    with pytest.raises(EngineError, match=r"r: LoRA rank 16 is above the engine's max_lora_rank 8"):
        check_servable(d, 8)
    with pytest.raises(EngineError, match=r"modules_to_save: .*lm_head.* cannot be served"):
        check_servable(d, 16)
    with pytest.raises(EngineError, match="adapter directory is missing"):
        adapter_config(tmp_path / "gone")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError, match="adapter_config.json: missing"):
        adapter_config(tmp_path / "empty")
    (tmp_path / "empty" / "adapter_config.json").write_text("{not json")
    with pytest.raises(EngineError, match="unreadable adapter config"):
        adapter_config(tmp_path / "empty")


@pytest.mark.parametrize(
    ("deltas", "stops", "want"),
    [
        (["Hello", " there\nBo", "b: hi"], ["\nBob:"], "Hello there"),
        (["abc"], [], "abc"),
        (["no stop ", "here"], ["\nBob:"], "no stop here"),
        (["\nBob:", " x"], ["\nBob:", "\nUser:"], ""),
        (["x\nUs", "er", ": y", "\nBob: z"], ["\nBob:", "\nUser:"], "x"),
    ],
)
def test_stop_cutter_across_deltas(deltas, stops, want):
    c = StopCutter(stops)
    out = "".join(c.feed(d) for d in deltas) + c.flush()
    assert out == want


def test_make_engine_picks_the_backend_without_importing_it(workspace, tiny_model):
    ws = _settings(workspace, model={"name_or_path": str(tiny_model)}, engine={"backend": "transformers"})
    assert make_engine(ws).name == "transformers"
    ws = _settings(workspace, engine={"backend": "remote", "base_url": "http://127.0.0.1:9/v1"})
    assert make_engine(ws).name == "remote"
    ws = _settings(workspace, model={"name_or_path": str(tiny_model)}, engine={"backend": "vllm"})
    assert make_engine(ws).name == "vllm"
    # building engines (not starting them) keeps the heavy libraries out of the process
    code = (
        "import sys; from persona_studio.workspace import Workspace; from persona_studio.engine import make_engine;"
        f"make_engine(Workspace.open({str(ws.root)!r}));"
        "import persona_studio.chat.session, persona_studio.chat.tree, persona_studio.commands.chat;"
        "print(sorted(m for m in ('torch','vllm','transformers','openai','textual') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"


def test_start_in_background_reports_progress_from_another_thread(workspace, tiny_model):
    import threading

    from persona_studio.engine import start_in_background

    ws = _settings(workspace, model={"name_or_path": str(tiny_model)}, engine={"backend": "transformers"})
    seen: list[tuple[str, float | None, str]] = []
    fut = start_in_background(
        make_engine(ws), lambda msg, frac: seen.append((msg, frac, threading.current_thread().name))
    )
    engine = fut.result(timeout=300)
    try:
        assert engine.model is not None
        assert seen[-1][1] == 1.0 and all(t == "transformers-start" for _, _, t in seen)
        # the base model before any adapter was ever loaded (a plain model, not yet a PeftModel)
        from persona_studio.engine import GenRequest, Sampling

        req = GenRequest([{"role": "user", "content": "hi"}], "x", None, Sampling(temperature=0, max_new_tokens=5))
        assert "".join(engine.generate(req)) and req.generated_tokens == 5
    finally:
        engine.close()
    ws = _settings(workspace, model={"name_or_path": str(workspace.root / "no-model")}, engine={"backend": "transformers"})
    # A model that is nowhere is refused before any engine starts, naming the setting.
    from persona_studio.errors import UserError

    with pytest.raises(UserError, match=r"settings.jsonc:1: model.name_or_path: .*no-model: no such model directory"):
        start_in_background(make_engine(ws)).result(timeout=60)


def test_engine_refuses_what_serve_refuses(workspace):
    """The engine and `serve` share one servability check (adapters.servable_problem)."""
    import torch
    from safetensors.torch import save_file

    d = _adapter(workspace, "alice", 8)
    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": torch.zeros(8, 4)}, str(d / "adapter_model.safetensors"))
    check_servable(d, 8)  # a plain LoRA adapter is fine
    (d / "added_tokens.json").write_text("{}")
    with pytest.raises(EngineError, match=r"added tokens \(added_tokens.json\)"):
        check_servable(d, 8)
    (d / "added_tokens.json").unlink()
    save_file({"base_model.model.embed_tokens.weight": torch.zeros(8, 4)}, str(d / "adapter_model.safetensors"))
    with pytest.raises(EngineError, match=r"embedding weights .*embed_tokens.weight"):
        check_servable(d, 8)
