"""Preference pairs -> token ids: one prompt, a chosen and a rejected completion, as TRL does it.

The prompt is the conversation rendered with the base model's chat template and its generation
prompt; a completion is what `prompt + reply` renders to beyond that (the reply and the template's
end-of-turn tokens). Where the tokenized prompt and prompt+reply disagree at the seam, the
completion starts where they diverge (TRL's `common_prefix_length` rule), so the log-probs, and
with them the loss, match TRL's DPOTrainer on the same pairs.

A batch holds the chosen rows first, then the rejected rows, each right-padded; the
`completion_mask` marks the completion tokens whose log-probs count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PairExample:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))

    @property
    def n_tokens(self) -> int:
        """Tokens the pair puts through the model (both rows)."""
        return 2 * len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)


def _ids(tokenizer: Any, messages: list[dict[str, str]], gen: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def tokenize_pair(tokenizer: Any, messages: list[dict[str, str]], chosen: str, rejected: str,
                  cutoff_len: int) -> PairExample | None:
    """Token ids of a pair; None when no completion token is left within `cutoff_len`.

    Too long: the completions are cut to half the budget at most, then the prompt loses its oldest
    tokens (the system prompt goes before the last turns do: the reply answers the latest line)."""
    prompt = _ids(tokenizer, messages, True)
    with_c = _ids(tokenizer, [*messages, {"role": "assistant", "content": chosen}], False)
    with_r = _ids(tokenizer, [*messages, {"role": "assistant", "content": rejected}], False)
    n = min(_common_prefix(prompt, with_c), _common_prefix(prompt, with_r))
    p, c, r = prompt[:n], with_c[n:], with_r[n:]
    if not c or not r:
        return None
    if len(p) + max(len(c), len(r)) > cutoff_len:
        keep = max(cutoff_len // 2, cutoff_len - len(p))
        c, r = c[:keep], r[:keep]
        p = p[len(p) - (cutoff_len - max(len(c), len(r))):] if cutoff_len > max(len(c), len(r)) else []
    return PairExample(p, c, r)


def collate_pairs(examples: list[PairExample], pad_id: int) -> dict[str, Any]:
    """input_ids / attention_mask / completion_mask for [chosen rows; rejected rows], right-padded."""
    import torch

    rows = [(e.prompt_ids, e.chosen_ids) for e in examples] + [(e.prompt_ids, e.rejected_ids) for e in examples]
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    comp = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, c) in enumerate(rows):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        mask[i, : len(p) + len(c)] = 1
        comp[i, len(p) : len(p) + len(c)] = 1
    return {"input_ids": ids, "attention_mask": mask, "completion_mask": comp,
            "n_real": sum(len(p) + len(c) for p, c in rows)}
