"""DPO throughput: our preference job's loop vs a plain TRL `DPOTrainer` on the same model and pairs.

    PYTHONPATH=. python bench/dpo_bench.py [--pairs 48] [--rounds 2] [--quantization nf4|none]

Both sides start from the same LoRA adapter on the same base, loaded by the same code
(train/pref_loop.load_pref_model: NF4 + prepare_model_for_kbit_training + the adapter, trainable),
get the same conversational pairs, batch size, accumulation, learning rate, schedule, beta,
max length and seed, and train one epoch, so both put the same real tokens through the model
(prompt + chosen and prompt + rejected of every pair). The reference is the starting adapter on
both sides (TRL keeps a frozen copy named "ref"; we take its log-probs once before the first
step). Timed: everything after the model is loaded — for TRL the dataset preparation and
`train()`, for us the reference pass, the loop and saving the adapter. tokens/s = real tokens /
those seconds. Runs alternate (ours, TRL, ...); the best run per side is the headline (other load
on a shared machine only slows a run down), and the ratio ours/TRL is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persona_studio.settings import TrainPrefArgs, TrainSftArgs  # noqa: E402
from persona_studio.testkit import CORPUS, build_tiny_llama  # noqa: E402
from persona_studio.train import data as data_mod  # noqa: E402
from persona_studio.train import pref_loop  # noqa: E402
from persona_studio.train.spec import TrainSpec, resolve_hardware  # noqa: E402


def make_pairs(n: int, seed: int) -> list[dict]:
    """Chat-like pairs: 1-3 turns of context, replies of varied length (as chat edits are)."""
    rng = random.Random(seed)
    words = " ".join(CORPUS).split()

    def line(lo: int, hi: int) -> str:
        return " ".join(rng.choices(words, k=int(math.exp(rng.uniform(math.log(lo), math.log(hi))))))

    out = []
    for _ in range(n):
        msgs = [{"role": "system", "content": "You are Alice."}]
        for _turn in range(rng.randint(1, 3)):
            msgs += [{"role": "user", "content": line(3, 20)}, {"role": "assistant", "content": line(3, 40)}]
        msgs.append({"role": "user", "content": line(3, 20)})
        out.append({"messages": msgs, "chosen": line(3, 60), "rejected": line(3, 60)})
    return out


def starting_adapter(base: Path, out: Path, quantization: str) -> Path:
    """A LoRA adapter with non-zero weights (as a trained SFT adapter has), saved like ours are."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    t = TrainSftArgs(quantization=quantization)
    cfg = LoraConfig(r=t.lora_rank, lora_alpha=t.lora_alpha, lora_dropout=0.0, target_modules=list(t.lora_target),
                     init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, cfg).save_pretrained(out)
    return out


def run_ours(spec: TrainSpec, rows: list[dict], work: Path) -> float:
    job = Path(tempfile.mkdtemp(dir=work))
    data_mod.write_jsonl(job / "data.jsonl", rows)
    loaded: list[float] = []
    real_load = pref_loop.load_pref_model

    def timed_load(s: TrainSpec):  # the clock starts once the model is loaded, as on TRL's side
        out = real_load(s)
        loaded.append(time.perf_counter())
        return out

    pref_loop.load_pref_model = timed_load
    try:
        assert pref_loop.train(spec, job) == "done"
    finally:
        pref_loop.load_pref_model = real_load
    return time.perf_counter() - loaded[0]


def run_trl(spec: TrainSpec, rows: list[dict], work: Path) -> float:
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    p = spec.pref
    assert p is not None
    torch.manual_seed(p.seed)
    model, tok = pref_loop.load_pref_model(spec)
    t0 = time.perf_counter()
    ds = Dataset.from_list([{"prompt": r["messages"], "chosen": [{"role": "assistant", "content": r["chosen"]}],
                             "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows])
    args = DPOConfig(
        output_dir=str(Path(tempfile.mkdtemp(dir=work))), per_device_train_batch_size=p.per_device_train_batch_size,
        gradient_accumulation_steps=p.gradient_accumulation_steps, learning_rate=p.learning_rate,
        num_train_epochs=1, lr_scheduler_type=p.lr_scheduler_type, warmup_steps=0, beta=p.beta,
        max_length=p.cutoff_len, gradient_checkpointing=p.gradient_checkpointing, use_cpu=spec.device == "cpu",
        report_to=[], logging_steps=10**6, save_strategy="no", seed=p.seed, bf16=spec.dtype == "bfloat16",
        fp16=spec.dtype == "float16",
        dataloader_num_workers=0,
    )
    DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok).train()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quantization", choices=["nf4", "none"], default="nf4")
    ap.add_argument("--batch", type=int, default=4)
    a = ap.parse_args()
    import torch

    work = Path(tempfile.mkdtemp(prefix="dpo-bench-"))
    base = build_tiny_llama(work / "tiny")
    adapter = starting_adapter(base, work / "adapter", a.quantization)
    pref = TrainPrefArgs(per_device_train_batch_size=a.batch, gradient_accumulation_steps=1, num_train_epochs=1,
                         cutoff_len=512, learning_rate=5e-5, warmup_ratio=0.0, lr_scheduler_type="constant",
                         gradient_checkpointing=True, save_steps=10**6, logging_steps=10**6)
    device, _n_gpus, dtype = resolve_hardware("auto")
    spec = TrainSpec("bench", "alice", str(work), str(base), False, device, 0, dtype,
                     dataclasses.replace(TrainSftArgs(), quantization=a.quantization), method="dpo", pref=pref,
                     sft_adapter=str(adapter))
    rows = make_pairs(a.pairs, 0)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    tokens = sum(e.n_tokens for e in pref_loop.tokenize_records(tok, rows, pref.cutoff_len))
    print(f"{a.pairs} pairs, {tokens} real tokens per epoch, batch {a.batch}, {a.quantization}, "
          f"{device} {dtype}, torch threads {torch.get_num_threads()}", flush=True)
    ours, trl = [], []
    for r in range(a.rounds):
        ours.append(run_ours(spec, rows, work))
        trl.append(run_trl(spec, rows, work))
        print(f"round {r + 1}: ours {tokens / ours[-1]:.0f} tok/s ({ours[-1]:.1f} s), "
              f"TRL DPOTrainer {tokens / trl[-1]:.0f} tok/s ({trl[-1]:.1f} s)", flush=True)
    best_ours, best_trl = tokens / min(ours), tokens / min(trl)
    print(f"best: ours {best_ours:.0f} tok/s, TRL DPOTrainer {best_trl:.0f} tok/s, "
          f"ratio ours/TRL = {best_ours / best_trl:.2f}x")


if __name__ == "__main__":
    main()
