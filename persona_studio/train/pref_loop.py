"""The preference loop (DPO / ORPO), read top to bottom; the job machinery is SFT's (train/loop.py).

The run starts from the persona's current adapter: it is loaded trainable on the (4-bit) base, and
for DPO the same adapter is the reference. The reference never changes, so its log-probs are
taken once, before the first step, by the very model about to be trained (its weights are the
SFT adapter's at that point) and kept in `ref_logps.json`: no second model, no second adapter,
and one forward per pair per step instead of two. `reference: base` takes them with the adapter
disabled instead. Dropout is off (as TRL's `disable_dropout`), so those log-probs are exactly
what the policy gives at step 0.

Checkpoints, resume, metrics and cancel work as in loop.py: a checkpoint is the adapter +
optimizer + scheduler + step + RNG states, and the batch order is a pure function of (seed, epoch).
One metrics line per logging step adds the preference numbers to SFT's: reward_margin,
rewards_chosen/rejected, logps_chosen/rejected (summed over a completion, mean over pairs), accuracy.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

from persona_studio.train import data as data_mod
from persona_studio.train import loop
from persona_studio.train.pref_data import PairExample, collate_pairs, tokenize_pair
from persona_studio.train.pref_loss import completion_logps, dpo_loss, orpo_loss
from persona_studio.train.spec import TrainError, TrainSpec
from persona_studio.workspace import atomic_write

REF_FILE = "ref_logps.json"


def load_pref_model(spec: TrainSpec) -> tuple[Any, Any]:
    """Base model as the starting adapter was trained on (same quantization) + that adapter, trainable."""
    import torch
    from peft import PeftModel, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    t, p = spec.train, spec.pref
    assert p is not None
    dtype = getattr(torch, spec.dtype)
    tokenizer = AutoTokenizer.from_pretrained(spec.base_model, trust_remote_code=spec.trust_remote_code)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": spec.trust_remote_code, "attn_implementation": "sdpa"}
    if spec.device == "cuda":
        kwargs["device_map"] = {"": 0}
    if t.quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(spec.base_model, **kwargs)
    model.config.use_cache = False
    gc_kwargs = {"use_reentrant": False}
    if t.quantization == "nf4":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=p.gradient_checkpointing, gradient_checkpointing_kwargs=gc_kwargs
        )
    elif p.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
        model.enable_input_require_grads()
    model = PeftModel.from_pretrained(model, spec.sft_adapter, is_trainable=True)
    for m in model.modules():  # TRL's disable_dropout: the policy at step 0 *is* the reference
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model, tokenizer


def tokenize_records(tokenizer: Any, records: list[dict[str, Any]], cutoff_len: int) -> list[PairExample]:
    out = []
    for r in records:
        ex = tokenize_pair(tokenizer, r["messages"], r["chosen"], r["rejected"], cutoff_len)
        if ex is not None:
            out.append(ex)
    return out


def reference_logps(model: Any, examples: list[PairExample], pad_id: int, batch_size: int, device: Any,
                    use_base: bool) -> tuple[list[float], list[float]]:
    """Summed completion log-probs of every pair under the reference (this model now, or its base)."""
    import contextlib

    import torch

    chosen, rejected = [0.0] * len(examples), [0.0] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: examples[i].length)  # little padding
    ctx = model.disable_adapter() if use_base else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    with torch.no_grad(), ctx:
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            batch = _to_device(collate_pairs([examples[i] for i in idx], pad_id), device)
            logps, _ = completion_logps(model, batch)
            c, r = logps.float().cpu().chunk(2)
            for k, i in enumerate(idx):
                chosen[i], rejected[i] = float(c[k]), float(r[k])
    model.train(was_training)
    return chosen, rejected


def _to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    target = batch["completion_mask"][:, 1:].bool()
    out = {k: (v.to(device, non_blocking=True) if hasattr(v, "to") else v) for k, v in batch.items()}
    out["keep"] = target.any(0).nonzero().squeeze(-1).to(device, non_blocking=True)
    out["n_chosen_tokens"] = int(target[: target.shape[0] // 2].sum())
    return out


def _scheduler(optimizer: Any, spec: TrainSpec, total_steps: int) -> Any:
    from transformers import get_scheduler

    p = spec.pref
    assert p is not None
    name = "constant_with_warmup" if p.lr_scheduler_type == "constant" else p.lr_scheduler_type
    return get_scheduler(name, optimizer, num_warmup_steps=int(math.ceil(total_steps * p.warmup_ratio)),
                         num_training_steps=total_steps)


def train(spec: TrainSpec, job_dir: Path, stop: loop.StopFn = lambda: False,
          progress: loop.ProgressFn = lambda _m: None) -> str:
    """Train; "done" (adapter in job_dir/adapter) or "cancelled" (checkpoint saved)."""
    import torch

    p = spec.pref
    if p is None or spec.method not in ("dpo", "orpo"):
        raise TrainError(f"{job_dir / 'spec.json'}: not a preference run (method {spec.method!r})")
    random.seed(p.seed)
    torch.manual_seed(p.seed)
    model, tokenizer = load_pref_model(spec)
    device = next(q for q in model.parameters() if q.requires_grad).device
    records = data_mod.read_jsonl(job_dir / "data.jsonl")
    examples = tokenize_records(tokenizer, records, p.cutoff_len)
    if not examples:
        raise TrainError(f"{job_dir / 'data.jsonl'}: no pair has a reply within cutoff_len={p.cutoff_len}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    bs, ga = p.per_device_train_batch_size, p.gradient_accumulation_steps
    lengths = [e.length for e in examples]
    n_batches = math.ceil(len(examples) / bs)
    steps_per_epoch = max(1, math.ceil(n_batches / ga))
    total_steps = p.max_steps if p.max_steps > 0 else max(1, math.ceil(steps_per_epoch * p.num_train_epochs))

    ref_c: list[float] = []
    ref_r: list[float] = []
    if spec.method == "dpo":
        ref_path = job_dir / REF_FILE
        if ref_path.exists():  # a resumed run: the reference was measured before its first step
            saved = json.loads(ref_path.read_text(encoding="utf-8"))
            ref_c, ref_r = saved["chosen"], saved["rejected"]
        if len(ref_c) != len(examples):
            ref_c, ref_r = reference_logps(model, examples, pad_id, bs, device, use_base=p.reference == "base")
            atomic_write(ref_path, json.dumps({"chosen": ref_c, "rejected": ref_r}))

    params = [q for q in model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=p.learning_rate, weight_decay=0.0)
    scheduler = _scheduler(optimizer, spec, total_steps)
    step, elapsed_before = 0, 0.0
    ckpt = loop.latest_checkpoint(job_dir)
    if ckpt is not None:
        state = loop.load_checkpoint(ckpt, model, optimizer, scheduler)
        step, elapsed_before = state["step"], state["elapsed"]
        print(f"pref: resuming from checkpoint {ckpt.name} (step {step} of {total_steps})", flush=True)
    metrics_path = job_dir / "metrics.jsonl"
    loop.truncate_metrics(metrics_path, step)

    cache: dict[int, list[list[int]]] = {}

    def micro_batch(m: int) -> list[int]:
        epoch, idx = divmod(m, n_batches)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = data_mod.length_grouped_batches(lengths, bs, p.seed, epoch)
        return cache[epoch][idx]

    run_start = time.monotonic()

    def elapsed_now() -> float:
        return elapsed_before + time.monotonic() - run_start

    model.train()
    start_step = step
    win: dict[str, float] = {}
    win_start = time.monotonic()
    while step < total_steps:
        picks = [micro_batch(step * ga + k) for k in range(ga)]
        batches = [_to_device(collate_pairs([examples[i] for i in idx], pad_id), device) for idx in picks]
        n_pairs = sum(len(idx) for idx in picks)
        n_chosen_tok = sum(b["n_chosen_tokens"] for b in batches)
        sums = {"loss": 0.0, "rc": 0.0, "rr": 0.0, "lc": 0.0, "lr_": 0.0, "acc": 0.0}
        for idx, b in zip(picks, batches, strict=True):
            logps, counts = completion_logps(model, b)
            pol_c, pol_r = logps.chunk(2)
            n_c, n_r = counts.chunk(2)
            if spec.method == "dpo":
                rc = torch.tensor([ref_c[i] for i in idx], device=logps.device)
                rr = torch.tensor([ref_r[i] for i in idx], device=logps.device)
                losses, rew_c, rew_r = dpo_loss(pol_c, pol_r, rc, rr, p.beta, p.loss_type, n_c, n_r)
                loss = losses.sum() / n_pairs
            else:
                losses, rew_c, rew_r, nll = orpo_loss(pol_c, pol_r, n_c, n_r, p.beta)
                loss = losses.sum() / n_pairs + nll / max(n_chosen_tok, 1)
            loss.backward()
            sums["loss"] += float(loss.detach())
            sums["rc"] += float(rew_c.sum())
            sums["rr"] += float(rew_r.sum())
            sums["lc"] += float(pol_c.detach().sum())
            sums["lr_"] += float(pol_r.detach().sum())
            sums["acc"] += float((rew_c > rew_r).float().sum())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        win["steps"] = win.get("steps", 0) + 1
        win["pairs"] = win.get("pairs", 0) + n_pairs
        win["tokens"] = win.get("tokens", 0) + sum(b["n_real"] for b in batches)
        for k, v in sums.items():
            win[k] = win.get(k, 0.0) + v
        stopping = stop()
        last = step == total_steps
        if step % p.logging_steps == 0 or last:
            now = time.monotonic()
            n = max(win["pairs"], 1)
            line = {
                "step": step,
                "total_steps": total_steps,
                "epoch": round(step * ga / n_batches, 4),
                "loss": win["loss"] / win["steps"],
                "eval_loss": None,
                "lr": lr,
                "reward_margin": (win["rc"] - win["rr"]) / n,
                "rewards_chosen": win["rc"] / n,
                "rewards_rejected": win["rr"] / n,
                "logps_chosen": win["lc"] / n,
                "logps_rejected": win["lr_"] / n,
                "accuracy": win["acc"] / n,
                "tokens_per_s": win["tokens"] / max(now - win_start, 1e-9),
                "elapsed": round(elapsed_now(), 3),
                "eta": round((now - run_start) / (step - start_step) * (total_steps - step), 3),
            }
            with open(metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
            progress(line)
            print(f"pref: step {step}/{total_steps} loss {line['loss']:.4f} margin {line['reward_margin']:.4f}"
                  f" acc {line['accuracy']:.2f}", flush=True)
            win, win_start = {}, time.monotonic()
        if stopping and not last:
            loop.save_checkpoint(job_dir, model, optimizer, scheduler, {"step": step, "elapsed": elapsed_now()})
            return "cancelled"
        if step % p.save_steps == 0 and not last:
            loop.save_checkpoint(job_dir, model, optimizer, scheduler, {"step": step, "elapsed": elapsed_now()})
    out = job_dir / "adapter"
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, safe_serialization=True, save_embedding_layers=False)
    return "done"
