"""Held-out loss and perplexity: the real persona's replies, teacher-forced, per adapter.

The conversations are tokenized exactly as training does (train/data.py: chat template,
labels on the assistant's tokens only, cutoff_len) and scored with training's own loss
(train/loop.py forward_loss), so a held-out loss reads on the same scale as the loss curve.
Every adapter is loaded onto one base model (peft); the base model is the adapters disabled.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from persona_studio.eval.generate import Cancelled


def heldout_losses(
    base_model: str,
    conversations: list[list[dict[str, str]]],
    adapters: list[tuple[str, Path | None]],
    *,
    cutoff_len: int,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, dict[str, float | int | None]]:
    """{label: {loss, perplexity, tokens}} for each (label, adapter dir or None for the base)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from persona_studio.train import data as data_mod
    from persona_studio.train.loop import forward_loss, to_device

    hf_logging.disable_progress_bar()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    tok = AutoTokenizer.from_pretrained(base_model, trust_remote_code=trust_remote_code)
    model: Any = AutoModelForCausalLM.from_pretrained(
        base_model, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
    ).to(device).eval()
    examples = [e for c in conversations if (e := data_mod.tokenize(tok, c, cutoff_len)) is not None]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out: dict[str, dict[str, float | int | None]] = {}
    steps = len(adapters) * max(1, math.ceil(len(examples) / batch_size))
    done = 0
    for k, (label, path) in enumerate(adapters):
        name = f"a{k}"
        if path is not None:
            if isinstance(model, PeftModel):
                model.load_adapter(str(path), adapter_name=name)
            else:
                model = PeftModel.from_pretrained(model, str(path), adapter_name=name).eval()
            model.set_adapter(name)
        total, count = 0.0, 0
        for i in range(0, len(examples), batch_size):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            batch = to_device(data_mod.collate(examples[i:i + batch_size], pad), device)
            with torch.inference_mode():
                if path is None and isinstance(model, PeftModel):
                    with model.disable_adapter():
                        loss_sum, n = forward_loss(model, batch)
                else:
                    loss_sum, n = forward_loss(model, batch)
            total += float(loss_sum)
            count += n
            done += 1
            if progress:
                progress(done, steps)
        loss = total / count if count else None
        out[label] = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)) if loss is not None else None,
                      "tokens": count}
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out
