"""The held-out set: conversations no adapter ever trains on, chosen by a stable rule.

A conversation's place is a number in [0, 1) taken from the SHA-256 of (seed, its turns): it
depends on nothing but its own text, so re-running make-dataset (or importing more chats) never
moves a conversation in or out because of the others. Those under `heldout_fraction` are held
out; when that gives fewer than `heldout_min`, the lowest-placed ones top it up, but never more
than a fifth of the samples, so training keeps the bulk. Training (train/jobs.py) drops the
held-out set from every job's data and takes its eval split from it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

MAX_SHARE = 0.2  # the held-out set never takes more than this share of a persona's samples


def place(turns: list[dict[str, str]], seed: int) -> float:
    """A conversation's stable position in [0, 1)."""
    text = json.dumps([[t["role"], t["content"]] for t in turns], ensure_ascii=False)
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def held_out_ids(samples: list[dict[str, Any]], fraction: float, minimum: int, seed: int) -> set[int]:
    """Indices (into `samples`) of the held-out conversations."""
    placed = sorted((place(s["turns"], seed), i) for i, s in enumerate(samples))
    cap = int(len(samples) * MAX_SHARE)
    n = sum(1 for p, _ in placed if p < fraction)
    if n < minimum:
        n = max(n, min(minimum, cap))
    return {i for _, i in placed[:n]}


@dataclass
class Split:
    train: list[dict[str, Any]]
    held: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


def split(samples: list[dict[str, Any]], args: Any) -> Split:
    """(train, held-out) for samples as train.data.select_samples returns them; `args` is settings.eval."""
    held_idx = held_out_ids(samples, args.heldout_fraction, args.heldout_min, args.seed)
    out = Split([s for i, s in enumerate(samples) if i not in held_idx],
                [s for i, s in enumerate(samples) if i in held_idx])
    if len(out.held) < args.heldout_min:
        out.warnings.append(
            f"only {len(out.held)} held-out conversation(s) of {len(samples)} samples (eval.heldout_min is "
            f"{args.heldout_min}, at most a fifth of the samples is held out): metrics will be noisy"
        )
    return out


def persona_split(ws: Any, persona_id: str) -> Split:
    """The persona's usable samples (as training selects them), split."""
    from persona_studio.train.data import select_samples

    store = ws.store()
    try:
        samples = select_samples(store, persona_id)
    finally:
        store.close()
    return split(samples, ws.settings.eval)
