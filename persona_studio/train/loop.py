"""The training loop: (Q)LoRA on the base model, read top to bottom.

One optimizer step = `gradient_accumulation_steps` micro-batches. The loss is the mean over the
step's *trained tokens* (not over micro-batches), so accumulation does not change the objective.
A checkpoint is the adapter + optimizer + scheduler + step + RNG states; with the batch order a
pure function of (seed, epoch), a resumed run continues exactly where the killed one stopped.
Under `accelerate launch` (several GPUs) each rank takes every world_size-th batch and rank 0
alone writes metrics, checkpoints and the adapter.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from persona_studio.train import data as data_mod
from persona_studio.train.spec import TrainError, TrainSpec
from persona_studio.workspace import atomic_write

StopFn = Callable[[], bool]
ProgressFn = Callable[[dict[str, Any]], None]

CKPT_DIR = "checkpoints"


# -- checkpoints -----------------------------------------------------------------------------------
def latest_checkpoint(job_dir: Path) -> Path | None:
    d = job_dir / CKPT_DIR
    if not d.is_dir():
        return None
    done = sorted(p for p in d.iterdir() if p.is_dir() and p.name.startswith("step-") and not p.name.endswith(".tmp"))
    return done[-1] if done else None


def checkpoint_step(job_dir: Path) -> int:
    ckpt = latest_checkpoint(job_dir)
    return int(ckpt.name.split("-")[1]) if ckpt else 0


def save_checkpoint(job_dir: Path, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> Path:
    import numpy as np
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    root = job_dir / CKPT_DIR
    final = root / f"step-{state['step']:06d}"
    tmp = root / (final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()}
    save_file(weights, tmp / "adapter.safetensors")
    # Only tensors, numbers, strings and containers go into the .pt files, so they load with
    # torch.load(weights_only=True); the Python and numpy RNG states are JSON.
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    version, keys, gauss = random.getstate()
    name, np_keys, pos, has_gauss, cached = np.random.get_state()
    (tmp / "rng.json").write_text(json.dumps({
        "python": [version, list(keys), gauss],
        "numpy": [name, np_keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }), encoding="utf-8")
    (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    # The rename is the commit point: a kill before it leaves the previous checkpoint intact.
    os.replace(tmp, final)
    for old in root.iterdir():
        if old != final and old.name.startswith("step-"):
            shutil.rmtree(old, ignore_errors=True)
    return final


def _load_data(path: Path) -> Any:
    """torch.load of a checkpoint file with weights_only=True: tensors and plain data only. A
    workspace can be copied or shared, and a pickle runs whatever code it names when loaded."""
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        raise TrainError(f"{path}: not loaded: it holds pickled objects, not just tensors and numbers"
                         " (a planted or foreign file; start a new job instead of resuming)") from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise TrainError(f"{path}: damaged checkpoint file ({str(exc).splitlines()[0][:200]})") from None


def read_checkpoint(ckpt: Path) -> dict[str, Any]:
    """Everything a checkpoint holds, read safely (no code runs) and checked for shape; raises
    TrainError (one line) otherwise. Called before a resumed job starts, and again by it."""
    try:
        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        rng = json.loads((ckpt / "rng.json").read_text(encoding="utf-8"))
        version, keys, gauss = rng["python"]
        name, np_keys, pos, has_gauss, cached = rng["numpy"]
        python_state = (int(version), tuple(int(k) for k in keys), None if gauss is None else float(gauss))
        numpy_state = (str(name), np_keys, int(pos), int(has_gauss), float(cached))
        int(state["step"]), float(state["elapsed"])
    except FileNotFoundError as exc:
        raise TrainError(f"{ckpt}: incomplete checkpoint (no {Path(exc.filename or '').name}); start a new job"
                         ) from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise TrainError(f"{ckpt}: damaged checkpoint ({type(exc).__name__}: {exc})") from None
    torch_rng = _load_data(ckpt / "rng.pt")
    if not isinstance(torch_rng, dict) or "torch" not in torch_rng:
        raise TrainError(f"{ckpt / 'rng.pt'}: damaged checkpoint file (no torch RNG state)")
    return {
        "state": state,
        "optimizer": _load_data(ckpt / "optimizer.pt"),
        "scheduler": _load_data(ckpt / "scheduler.pt"),
        "rng": {**torch_rng, "python": python_state, "numpy": numpy_state},
    }


def load_checkpoint(ckpt: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    import numpy as np
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = read_checkpoint(ckpt)  # before anything is applied: a bad file changes nothing
    set_peft_model_state_dict(model, load_file(ckpt / "adapter.safetensors"))
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rng = saved["rng"]
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return saved["state"]


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metric lines past the checkpoint we resume from, so the curve continues without a seam."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                keep.append(line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a half-written last line from a killed run
    atomic_write(path, "".join(keep))


# -- model ---------------------------------------------------------------------------------------
def load_model(spec: TrainSpec, device: str, local_rank: int = 0) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    t = spec.train
    dtype = getattr(torch, spec.dtype)
    # local_files_only: the job was refused before it started unless the base model is on this
    # machine (train/spec.check_base_model); a worker must never wait on a download.
    tokenizer = AutoTokenizer.from_pretrained(spec.base_model, trust_remote_code=spec.trust_remote_code,
                                              local_files_only=True)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": spec.trust_remote_code, "attn_implementation": "sdpa",
                              "local_files_only": True}
    if device == "cuda":
        kwargs["device_map"] = {"": local_rank}
    if t.quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(spec.base_model, **kwargs)
    model.config.use_cache = False
    gc_kwargs = {"use_reentrant": False}
    if t.quantization == "nf4":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=t.gradient_checkpointing, gradient_checkpointing_kwargs=gc_kwargs
        )
    elif t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
    # Only LoRA A/B on the listed linears: no modules_to_save, no new tokens, so vLLM can serve it.
    lora = LoraConfig(
        r=t.lora_rank,
        lora_alpha=t.lora_alpha,
        lora_dropout=t.lora_dropout,
        target_modules=list(t.lora_target),
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:
        raise TrainError(f"train_sft_args.lora_target: {str(exc).splitlines()[0]}") from None
    return model, tokenizer


def _make_scheduler(optimizer: Any, spec: TrainSpec, total_steps: int) -> Any:
    from transformers import get_scheduler

    t = spec.train
    name = "constant_with_warmup" if t.lr_scheduler_type == "constant" else t.lr_scheduler_type
    warmup = int(math.ceil(total_steps * t.warmup_ratio))
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


# -- the loop ----------------------------------------------------------------------------------------
def train(
    spec: TrainSpec,
    job_dir: Path,
    stop: StopFn = lambda: False,
    progress: ProgressFn = lambda _m: None,
    sampler: Callable[[int, Any, Any], None] | None = None,
) -> str:
    """Train, checkpointing as configured; returns "done" (adapter in job_dir/adapter) or "cancelled".

    `sampler(step, model, tokenizer)` runs after every optimizer step on rank 0 (eval/samples.py:
    probe replies every few steps)."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
    main = rank == 0
    t = spec.train
    random.seed(t.seed)
    torch.manual_seed(t.seed)

    model, tokenizer = load_model(spec, spec.device, local_rank)
    device = next(p for p in model.parameters() if p.requires_grad).device
    records = data_mod.read_jsonl(job_dir / "data.jsonl")
    train_ex = data_mod.tokenize_all(tokenizer, [r for r in records if r["split"] == "train"], t.cutoff_len)
    eval_ex = data_mod.tokenize_all(tokenizer, [r for r in records if r["split"] == "eval"], t.cutoff_len)
    if not train_ex:
        raise TrainError(f"{job_dir / 'data.jsonl'}: no sample has an assistant reply within cutoff_len={t.cutoff_len}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    lengths = [len(e.input_ids) for e in train_ex]
    # A "row" is one sequence of the batch: one example, or with packing several back to back.
    rows = data_mod.pack_rows(lengths, t.cutoff_len, t.seed) if t.packing else [[i] for i in range(len(train_ex))]
    row_lengths = [sum(lengths[i] for i in row) for row in rows]

    n_batches = math.ceil(len(rows) / t.per_device_train_batch_size)
    per_rank = max(1, n_batches // world)
    steps_per_epoch = max(1, math.ceil(per_rank / t.gradient_accumulation_steps))
    total_steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(steps_per_epoch * t.num_train_epochs))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=0.0)
    # fp16 (pre-Ampere GPUs) needs loss scaling or small gradients flush to zero; bf16/fp32 do not.
    scaler = torch.amp.GradScaler("cuda", enabled=spec.dtype == "float16" and spec.device == "cuda")
    scheduler = _make_scheduler(optimizer, spec, total_steps)
    step, elapsed_before = 0, 0.0
    ckpt = latest_checkpoint(job_dir)
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, optimizer, scheduler)
        step, elapsed_before = state["step"], state["elapsed"]
        if main:
            print(f"loop: resuming from checkpoint {ckpt.name} (step {step} of {total_steps})", flush=True)
    metrics_path = job_dir / "metrics.jsonl"
    if main:
        truncate_metrics(metrics_path, step)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[local_rank])

    epoch_cache: dict[int, list[list[int]]] = {}

    def micro_batch(m: int) -> dict[str, Any]:
        epoch, idx = divmod(m, per_rank)
        if epoch not in epoch_cache:
            epoch_cache.clear()
            batches = data_mod.length_grouped_batches(row_lengths, t.per_device_train_batch_size, t.seed, epoch)
            epoch_cache[epoch] = batches[rank::world][:per_rank]
        picked = [rows[r] for r in epoch_cache[epoch][idx]]
        if t.packing:
            batch = data_mod.collate_packed([[train_ex[i] for i in row] for row in picked], pad_id)
        else:
            batch = data_mod.collate([train_ex[row[0]] for row in picked], pad_id)
        return to_device(batch, device)

    def evaluate() -> float | None:
        if not eval_ex:
            return None
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(eval_ex), t.per_device_train_batch_size):
                b = data_mod.collate(eval_ex[i : i + t.per_device_train_batch_size], pad_id)
                loss_sum, n = forward_loss(model, to_device(b, device))
                total += float(loss_sum)
                count += n
        model.train()
        return total / max(count, 1)

    def checkpoint() -> None:
        if main:
            save_checkpoint(job_dir, model, optimizer, scheduler, {"step": step, "elapsed": elapsed_now()})

    run_start = time.monotonic()

    def elapsed_now() -> float:
        return elapsed_before + time.monotonic() - run_start

    model.train()
    start_step = step
    win_loss, win_tokens, win_seen, win_start = torch.zeros((), device=device), 0, 0, time.monotonic()
    while step < total_steps:
        batches = [micro_batch(step * t.gradient_accumulation_steps + k) for k in range(t.gradient_accumulation_steps)]
        n_step = sum(b["n_trained"] for b in batches)  # tokens trained this step
        for k, b in enumerate(batches):
            # DDP: only the last micro-batch all-reduces gradients.
            sync = world == 1 or k == len(batches) - 1
            ctx = net.no_sync() if not sync else contextlib.nullcontext()
            with ctx:
                loss_sum, n = forward_loss(net, b)
                scaler.scale(loss_sum / max(n_step, 1)).backward()
            win_loss += loss_sum.detach()  # a tensor: reading it out would stall the GPU every micro-batch
            win_tokens += n
            win_seen += b["n_real"]
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        lr = scheduler.get_last_lr()[0]
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        stopping = _agree(stop(), world)
        last = step == total_steps
        eval_now = last or step % t.save_steps == 0
        if main and (step % t.logging_steps == 0 or last or eval_now):
            now = time.monotonic()
            done_here = step - start_step
            elapsed = elapsed_now()
            line = {
                "step": step,
                "total_steps": total_steps,
                "epoch": round(step * t.gradient_accumulation_steps / per_rank, 4),
                "loss": float(win_loss) / max(win_tokens, 1),
                "eval_loss": evaluate() if eval_now else None,
                "lr": lr,
                "tokens_per_s": win_seen * world / max(now - win_start, 1e-9),
                "elapsed": round(elapsed, 3),
                "eta": round((now - run_start) / done_here * (total_steps - step), 3),
            }
            with open(metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
            progress(line)
            print(f"loop: step {step}/{total_steps} loss {line['loss']:.4f} lr {lr:.2e}", flush=True)
            win_loss, win_tokens, win_seen, win_start = torch.zeros((), device=device), 0, 0, time.monotonic()
        if main and sampler is not None:
            t0 = time.monotonic()
            sampler(step, model, tokenizer)
            win_start += time.monotonic() - t0  # sampling is not training: keep it out of tokens/s
        if stopping and not last:  # a stop request during the final step changes nothing
            checkpoint()
            return "cancelled"
        if step % t.save_steps == 0 and not last:
            checkpoint()
    if main:
        out = job_dir / "adapter"
        shutil.rmtree(out, ignore_errors=True)
        model.save_pretrained(out, safe_serialization=True, save_embedding_layers=False)
    return "done"


def to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    """Move a collated batch, adding what the step needs to know without asking the GPU (no syncs):
    `keep` (positions whose next token is trained), `n_trained` and `n_real` token counts."""
    target = batch["labels"][:, 1:] != data_mod.IGNORE
    n_real = batch.pop("n_real") if "n_real" in batch else int(batch["attention_mask"].sum())
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    out["keep"] = target.any(0).nonzero().squeeze(-1).to(device, non_blocking=True)
    out["n_trained"] = int(target.sum())
    out["n_real"] = n_real
    return out


def forward_loss(net: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """(summed cross-entropy over trained tokens, their count), for a batch from `to_device`.

    Only the positions whose next token is trained go through the LM head (`logits_to_keep` with
    indices): with assistant-only labels that skips most of the batch, and for 150k-token
    vocabularies the full-sequence logits are the largest tensor of the whole step.
    """
    import torch.nn.functional as F

    keep = batch["keep"]
    # Packed rows come with position_ids and no attention_mask (see data.collate_packed).
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    # use_cache=False also matters for packing: transformers looks for packed rows only without a cache.
    out = net(**inputs, logits_to_keep=keep, use_cache=False)
    logits = out.logits.float()
    tgt = batch["labels"][:, 1:][:, keep]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=data_mod.IGNORE,
                           reduction="sum")
    return loss, batch["n_trained"]


def _agree(flag: bool, world: int) -> bool:
    """All ranks stop on the same step if any of them was asked to."""
    if world == 1:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(flag)], device="cuda")
    dist.all_reduce(t)
    return bool(t.item())
