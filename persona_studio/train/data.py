"""Training data: which samples train, chat-template tokenization, length-grouped batches.

Loss is taken on the assistant's tokens only (everything else is labelled -100): the persona
should learn to *answer* like the person, not to predict what the other side says. Tokens are
found by character spans: render the conversation with the base model's own chat template,
find where each assistant reply starts and ends by rendering the prefixes, and mark the tokens
whose offsets fall inside. That works for any template that renders prefixes as prefixes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IGNORE = -100


def select_samples(store: Any, persona_id: str) -> list[dict[str, Any]]:
    """Accepted samples; pending ones too when nothing of this persona was ever scored; never rejected."""
    scored = store.query(
        "SELECT 1 FROM scores JOIN samples ON samples.id = scores.sample_id WHERE samples.persona_id = ? LIMIT 1",
        (persona_id,),
    )
    statuses = ("accepted",) if scored else ("accepted", "pending")
    rows = store.query(
        f"SELECT id, system, turns FROM samples WHERE persona_id = ? AND status IN ({','.join('?' * len(statuses))})"
        " ORDER BY id",
        (persona_id, *statuses),
    )
    out = []
    for row in rows:
        try:
            turns = json.loads(row["turns"])
        except json.JSONDecodeError:
            continue
        turns = clean_turns(turns)
        if turns:
            out.append({"id": row["id"], "system": row["system"] or "", "turns": turns})
    return out


def clean_turns(turns: Any) -> list[dict[str, str]] | None:
    """Keep user/assistant turns with text; None if no assistant reply is left to learn from."""
    if not isinstance(turns, list):
        return None
    kept = [
        {"role": t["role"], "content": t["content"]}
        for t in turns
        if isinstance(t, dict) and t.get("role") in ("user", "assistant")
        and isinstance(t.get("content"), str) and t["content"].strip()
    ]
    if not any(t["role"] == "assistant" for t in kept):
        return None
    return kept


def to_messages(sample: dict[str, Any], default_system: str = "") -> list[dict[str, str]]:
    system = sample.get("system") or default_system
    return ([{"role": "system", "content": system}] if system else []) + list(sample["turns"])


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    from persona_studio.workspace import atomic_write

    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# -- tokenization ----------------------------------------------------------------------------------
@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def _render(tokenizer: Any, messages: list[dict[str, str]], gen: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the character span of every assistant reply (end-of-turn included)."""
    text = _render(tokenizer, messages, gen=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(_render(tokenizer, messages[:i], gen=True)) if i else 0
        before = _render(tokenizer, messages[: i + 1], gen=False)
        if not text.startswith(before) or start > len(before):
            raise ValueError("chat template does not render prefixes as prefixes")
        spans.append((start, len(before)))
    return text, spans


def tokenize(tokenizer: Any, messages: list[dict[str, str]], cutoff_len: int) -> Example | None:
    """input_ids and assistant-only labels, truncated to cutoff_len; None if nothing is left to train."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"][:cutoff_len]
    labels = [IGNORE] * len(ids)
    for k, (a, b) in enumerate(enc["offset_mapping"][: len(ids)]):
        if b > a and any(s <= a and b <= e for s, e in spans):
            labels[k] = ids[k]
    ex = Example(ids, labels)
    return ex if ex.n_trained else None


def tokenize_all(tokenizer: Any, records: list[dict[str, Any]], cutoff_len: int) -> list[Example]:
    out = []
    for r in records:
        ex = tokenize(tokenizer, r["messages"], cutoff_len)
        if ex is not None:
            out.append(ex)
    return out


# -- batching ----------------------------------------------------------------------------------
def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of similar-length examples, so padding wastes little compute.

    Examples are shuffled, cut into mega-batches of 64 batches, sorted by length inside each, split
    into batches, and the batches are shuffled again. The order depends only on (seed, epoch), so a
    resumed run sees exactly the batches the killed run would have seen.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * 64
    batches = []
    for i in range(0, len(order), mega):
        chunk = sorted(order[i : i + mega], key=lambda j: -lengths[j])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: list[Example], pad_id: int) -> dict[str, Any]:
    """Right-pad to the longest example in the batch (labels -100 and attention 0 on padding)."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def split_eval(samples: list[dict[str, Any]], ratio: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, eval): a seeded hold-out; at least one eval sample once there are 10+ samples."""
    if ratio <= 0 or len(samples) < 2:
        return samples, []
    idx = list(range(len(samples)))
    random.Random(seed).shuffle(idx)
    n_eval = int(len(samples) * ratio)
    if n_eval == 0 and len(samples) >= 10:
        n_eval = 1
    held = set(idx[:n_eval])
    return [s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held]


# -- packing ---------------------------------------------------------------------------------------
def pack_rows(lengths: list[int], capacity: int, seed: int) -> list[list[int]]:
    """Example indices grouped into rows of at most `capacity` tokens (first-fit decreasing).

    Packing runs once per job (rows are then shuffled per epoch), so the number of optimizer
    steps is known up front and a resumed run sees the same rows. Fitting happens within
    shuffled chunks of 512 examples: rows end up nearly full while any row still mixes
    examples from across the data set.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    rows: list[list[int]] = []
    for c in range(0, len(order), 512):
        chunk_rows: list[list[int]] = []
        free: list[int] = []
        for i in sorted(order[c : c + 512], key=lambda j: -lengths[j]):
            for r, room in enumerate(free):
                if lengths[i] <= room:
                    chunk_rows[r].append(i)
                    free[r] -= lengths[i]
                    break
            else:
                chunk_rows.append([i])
                free.append(capacity - lengths[i])
        rows += chunk_rows
    return rows


def collate_packed(rows: list[list[Example]], pad_id: int) -> dict[str, Any]:
    """One sequence per row, examples back to back, with position_ids restarting at each example.

    No attention_mask: transformers then reads the restarts in position_ids as sequence
    boundaries and builds a block-diagonal causal mask, so examples never see each other.
    Each example's first label is dropped: it would otherwise be "predicted" from the previous one.
    """
    import torch

    width = max(sum(len(e.input_ids) for e in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    n_real = 0
    for r, row in enumerate(rows):
        at = 0
        for e in row:
            n = len(e.input_ids)
            ids[r, at : at + n] = torch.tensor(e.input_ids)
            labels[r, at + 1 : at + n] = torch.tensor(e.labels[1:])
            pos[r, at : at + n] = torch.arange(n)
            at += n
        pos[r, at:] = torch.arange(width - at)  # padding forms its own segment, with no labels
        n_real += at
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "n_real": n_real}
