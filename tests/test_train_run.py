"""Real training jobs on the tiny Llama: detached workers, QLoRA on the CPU, kill + resume, queue, cancel."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from persona_studio import adapters, cli
from persona_studio.errors import UserError
from persona_studio.train import jobs, loop, spec
from tests.train_helpers import PROMPT, REPLY, add_persona, add_samples, chat, make_ws, until

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _cli(ws, *argv: str) -> int:
    return cli.main([*argv, "--workspace", str(ws.root)])


def _greedy(model_dir: Path, adapter: Path | None, quantized: bool) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tok = AutoTokenizer.from_pretrained(model_dir)
    kw = {}
    if quantized:  # the adapter learned against the 4-bit base, so judge it on that base
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kw)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    msgs = [{"role": "system", "content": "You are Alice."}, {"role": "user", "content": PROMPT}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    enc = {k: v.to(model.device) for k, v in enc.items()}  # on CUDA the model may load onto the GPU
    out = model.generate(**enc, max_new_tokens=24, do_sample=False)
    return tok.decode(out[0][enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def _train_and_check_adapter(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> spec.TrainSpec:
    ws = make_ws(tmp_path / "ws", tiny_model, max_steps=60, save_steps=30)
    add_persona(ws, "alice")
    add_samples(ws, "alice", [chat(PROMPT, REPLY)])
    assert _cli(ws, "train", "--persona", "alice", "--wait", "--json") == 0
    started = json.loads(capsys.readouterr().out.splitlines()[0])
    (job,) = jobs.list_jobs(ws)
    assert job.job_id == started["job_id"] and job.state == "done", jobs.tail_log(job.job_dir, 30)
    assert (job.step, job.total_steps) == (60, 60)

    metrics = jobs.read_metrics(job.job_dir)
    assert [m["step"] for m in metrics] == list(range(1, 61))
    assert set(metrics[0]) >= {"step", "total_steps", "epoch", "loss", "eval_loss", "lr", "tokens_per_s", "elapsed", "eta"}
    first, last = (sum(m["loss"] for m in ms) / 5 for ms in (metrics[:5], metrics[-5:]))
    assert last < 0.5 * first, (first, last)
    assert all(m["tokens_per_s"] > 0 for m in metrics) and metrics[-1]["eta"] == 0

    # A vLLM-servable adapter: LoRA A/B only, safetensors, versioned, current, with its spec beside it.
    current = adapters.current(ws, "alice")
    assert current == ws.persona_dir("alice") / "adapters" / "v0001" and job.adapter == str(current)
    cfg = json.loads((current / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and not cfg.get("modules_to_save")
    from safetensors import safe_open

    with safe_open(str(current / "adapter_model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys)
    assert adapters.servable_problem(current, cfg) is None
    used = spec.load(current / "train_spec.json")
    assert used == spec.load(Path(job.job_dir) / "spec.json") and used.persona_id == "alice"

    base = _greedy(Path(used.base_model), None, quantized=used.train.quantization == "nf4")
    tuned = _greedy(Path(used.base_model), current, quantized=used.train.quantization == "nf4")
    assert tuned != base
    assert tuned == REPLY, tuned

    assert _cli(ws, "jobs", "wait", job.job_id) == 0
    assert _cli(ws, "jobs", "--json") == 0
    listed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [(j["job_id"], j["state"]) for j in listed] == [(job.job_id, "done")]
    return used


def test_qlora_job_learns_and_its_adapter_speaks(tmp_path: Path, tiny_model: Path, capsys) -> None:
    used = _train_and_check_adapter(tmp_path, tiny_model, capsys)
    assert (used.device, used.dtype, used.train.quantization) == ("cpu", "float32", "nf4")


@pytest.mark.gpu
def test_qlora_job_on_cuda(tmp_path: Path, tiny_model: Path, capsys) -> None:
    used = _train_and_check_adapter(tmp_path, tiny_model, capsys)
    assert used.device == "cuda" and used.dtype in ("bfloat16", "float16")


def test_killed_job_resumes_from_its_checkpoint(tmp_path: Path, tiny_model: Path) -> None:
    ws = make_ws(tmp_path / "ws", tiny_model, max_steps=40, save_steps=5, learning_rate=2e-3, eval_ratio=0.1)
    add_persona(ws, "alice")
    add_samples(ws, "alice", [chat(PROMPT, REPLY)] + [chat(f"Question {i}?", f"Answer {i}, with tea.") for i in range(9)])
    # Started by a CLI process that exits at once: the worker lives on in its own session.
    out = subprocess.run([sys.executable, "-m", "persona_studio", "train", "--persona", "alice", "--json",
                          "--workspace", str(ws.root)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    job = jobs.get_job(ws, json.loads(out.stdout)["job_id"])
    job_dir = Path(job.job_dir)
    until(lambda: jobs.job_status(job_dir)["checkpoint_step"] >= 10, 180, "a checkpoint at step 10")
    status = jobs.job_status(job_dir)
    assert status["state"] == "running"
    assert os.getsid(status["pid"]) == status["pid"] != os.getsid(0)
    os.kill(status["pid"], signal.SIGKILL)
    until(lambda: jobs.job_status(job_dir)["state"] == "failed", 10, "the killed job to read as failed")
    ckpt = jobs.job_status(job_dir)["checkpoint_step"]
    before = jobs.read_metrics(job_dir)
    assert ckpt < 40 and len(before) >= ckpt

    assert _cli(ws, "train", "--persona", "alice", "--resume") == 0
    assert [j.job_id for j in jobs.list_jobs(ws)] == [job.job_id]  # the same job goes on
    assert _cli(ws, "jobs", "wait", job.job_id) == 0
    done = jobs.get_job(ws, job.job_id)
    assert done.state == "done" and done.step == 40 and adapters.current(ws, "alice") is not None

    after = jobs.read_metrics(job_dir)
    assert [m["step"] for m in after] == list(range(1, 41))  # no gap, no duplicate past the checkpoint
    assert after[:ckpt] == before[:ckpt]
    assert after[ckpt]["elapsed"] >= after[ckpt - 1]["elapsed"]
    # The persona's held-out set (a fifth of ten samples at most) gives the eval loss at every checkpoint step.
    from persona_studio.eval import heldout

    assert spec.load(job_dir / "spec.json").n_eval == len(heldout.persona_split(ws, "alice").held) == 2
    assert [m["step"] for m in after if m["eval_loss"] is not None] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert any(f"resuming from checkpoint step-{ckpt:06d}" in line for line in jobs.tail_log(job_dir, 200))

    # Resuming is exact: the same spec trained without interruption gives the same loss curve.
    ref = tmp_path / "ref"
    ref.mkdir()
    shutil.copy(job_dir / "data.jsonl", ref / "data.jsonl")
    assert loop.train(spec.load(job_dir / "spec.json"), ref) == "done"
    ref_loss = [m["loss"] for m in jobs.read_metrics(ref)]
    assert [m["loss"] for m in after] == pytest.approx(ref_loss, rel=1e-3)


def test_jobs_queue_one_at_a_time_and_cancel_gracefully(tmp_path: Path, tiny_model: Path, capsys) -> None:
    # 16-bit LoRA here (quantization "none"), so both paths train for real.
    ws = make_ws(tmp_path / "ws", tiny_model, quantization="none", max_steps=400, save_steps=1000,
                 gradient_checkpointing=False)
    for pid, name in (("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")):
        add_persona(ws, pid, name)
        add_samples(ws, pid, [chat(PROMPT, f"I am {name}.")])
    a = jobs.start_job(ws, "alice")
    until(lambda: len(jobs.read_metrics(a.job_dir)) >= 3, 180, "alice's job to train")
    b = jobs.start_job(ws, "bob")
    c = jobs.start_job(ws, "carol")
    for j in (b, c):
        until(lambda j=j: jobs.job_status(j.job_dir).get("pid"), 60, f"{j.persona_id}'s worker to start")
    time.sleep(2)
    assert [jobs.job_status(j.job_dir)["state"] for j in (a, b, c)] == ["running", "queued", "queued"]
    with pytest.raises(UserError, match="already running"):
        jobs.start_job(ws, "alice")

    assert _cli(ws, "jobs", "cancel", a.job_id) == 0
    assert _cli(ws, "jobs", "wait", a.job_id) == 3
    stopped = jobs.get_job(ws, a.job_id)
    assert stopped.state == "cancelled" and stopped.error is None
    # The graceful stop saved a checkpoint at the last step it finished.
    assert stopped.checkpoint_step == jobs.read_metrics(a.job_dir)[-1]["step"] > 3

    # First queued, first served: bob trains, carol keeps waiting.
    until(lambda: jobs.job_status(b.job_dir)["state"] == "running", 120, "bob's job to leave the queue")
    assert jobs.read_status(Path(b.job_dir))["started_at"] >= jobs.read_status(Path(a.job_dir))["finished_at"]
    time.sleep(1)
    assert jobs.job_status(c.job_dir)["state"] == "queued"
    jobs.cancel_job(ws, c.job_id)  # a queued job stops without ever training
    assert jobs.wait_job(ws, c.job_id, timeout=60).state == "cancelled"
    assert not jobs.read_metrics(c.job_dir) and jobs.read_status(Path(c.job_dir)).get("started_at") is None
    jobs.cancel_job(ws, b.job_id)
    assert jobs.wait_job(ws, b.job_id, timeout=120).state == "cancelled"
    with pytest.raises(UserError, match="already cancelled"):
        jobs.cancel_job(ws, b.job_id)


def test_a_crashing_job_ends_failed_with_its_error(tmp_path: Path, tiny_model: Path, capsys) -> None:
    ws = make_ws(tmp_path / "ws", tiny_model, lora_target=["no_such_proj"])
    add_persona(ws, "alice")
    add_samples(ws, "alice", [chat(PROMPT, REPLY)])
    job = jobs.start_job(ws, "alice")
    assert _cli(ws, "jobs", "wait", job.job_id) == 1
    assert "failed" in capsys.readouterr().err
    failed = jobs.get_job(ws, job.job_id)
    assert failed.state == "failed" and "lora_target" in failed.error and "\n" not in failed.error


def test_packed_training_learns_with_fewer_steps(tmp_path: Path, tiny_model: Path) -> None:
    from persona_studio.settings import TrainSftArgs
    from persona_studio.train import data

    convs = [chat(f"Question {i}?", f"Answer {i}: {REPLY}") for i in range(12)]
    job = tmp_path / "job"
    job.mkdir()
    data.write_jsonl(job / "data.jsonl", [{"split": "train", "source": "store", "messages": c} for c in convs])
    t = TrainSftArgs(packing=True, cutoff_len=128, per_device_train_batch_size=1, gradient_accumulation_steps=1,
                     num_train_epochs=8, learning_rate=3e-3, lora_dropout=0.0, identity_samples=0, save_steps=1000)
    s = spec.TrainSpec("j", "alice", str(tmp_path), str(tiny_model), False, "cpu", 0, "float32", t)
    assert loop.train(s, job) == "done"
    metrics = jobs.read_metrics(job)
    # ~40 tokens each, so three or so examples share a 128-token row: far fewer rows than examples.
    assert metrics[-1]["total_steps"] <= 8 * 5
    first, last = metrics[0]["loss"], sum(m["loss"] for m in metrics[-3:]) / 3
    assert last < 0.6 * first, (first, last)
    assert (job / "adapter" / "adapter_model.safetensors").exists()
