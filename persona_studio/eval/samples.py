"""Samples while training: every `eval.sample_every_steps` steps the training worker answers a few
probe questions with the weights as they are, so the user reads how the persona starts to sound.

    .studio/jobs/<job>/probes.json    written when the job is queued: how often, what to ask
    .studio/jobs/<job>/samples.jsonl  one line per sampling step: {step, samples: [{question, reply}]}

The job's spec stays the training contract; the probes travel beside it because the worker
never re-reads settings.jsonc.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from persona_studio.workspace import atomic_write

PROBES = "probes.json"
SAMPLES = "samples.jsonl"


def write_probes(ws: Any, job_dir: Path, system: str, replies: list[str]) -> None:
    """The probe questions in the persona's language (from its replies), for the worker."""
    from persona_studio.train.identity import is_chinese

    e = ws.settings.eval
    questions = (e.probes_zh if is_chinese(" ".join(replies[:200])) else e.probes_en)[: e.sample_probes]
    atomic_write(job_dir / PROBES, json.dumps({
        "every": e.sample_every_steps, "max_new_tokens": e.max_new_tokens, "system": system,
        "questions": list(questions),
    }, ensure_ascii=False, indent=1) + "\n")


class Sampler:
    """Called by the training loop after each optimizer step (rank 0 only)."""

    def __init__(self, job_dir: Path):
        self.job_dir = job_dir
        try:
            cfg = json.loads((job_dir / PROBES).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = {}
        self.every = int(cfg.get("every", 0) or 0)
        self.max_new_tokens = int(cfg.get("max_new_tokens", 64))
        self.system = str(cfg.get("system", ""))
        self.questions = [str(q) for q in cfg.get("questions", [])]

    def due(self, step: int) -> bool:
        return self.every > 0 and bool(self.questions) and step % self.every == 0

    def __call__(self, step: int, model: Any, tokenizer: Any) -> None:
        if not self.due(step):
            return
        start = time.monotonic()
        replies = generate(model, tokenizer, self.system, self.questions, self.max_new_tokens)
        line = {"step": step, "seconds": round(time.monotonic() - start, 3),
                "samples": [{"question": q, "reply": r} for q, r in zip(self.questions, replies, strict=True)]}
        with open(self.job_dir / SAMPLES, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        print(f"samples: step {step}: {replies[0][:60]!r}", flush=True)


def generate(model: Any, tok: Any, system: str, questions: list[str], max_new_tokens: int) -> list[str]:
    """Greedy replies from the model being trained (left-padded batch), leaving it in train mode."""
    import torch

    rows = []
    for q in questions:
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q}]
        text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        rows.append(tok(text, add_special_tokens=False)["input_ids"])
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    width = max(len(r) for r in rows)
    device = next(model.parameters()).device
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None, pad_token_id=pad, use_cache=True)
    finally:
        if was_training:
            model.train()
    return [tok.decode(row[width:], skip_special_tokens=True).strip() for row in out.tolist()]


def read_samples(job_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete samples line of a job (the worker may be mid-write on the last)."""
    try:
        text = (Path(job_dir) / SAMPLES).read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.split("\n")[:-1]:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
