"""Token lengths of samples, and the `cutoff_len` they suggest.

The base model's tokenizer is used when it is on this machine (`model.name_or_path` is a local
directory, or the hub cache already holds it) — never downloaded. Otherwise the report says
plainly that it is an estimate: CJK characters count one token each, other characters a
quarter token, which is close for BPE tokenizers of Chinese/English chat models.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Turns = list[dict[str, Any]]
PERCENTILES = (50, 90, 95, 99)
_TEMPLATE_OVERHEAD = 4  # estimate: role markers + separators a chat template adds per message


def _hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "hub"


def tokenizer_is_local(name_or_path: str) -> bool:
    """Cheap check (no transformers import): is there anything local to load?"""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return (p / "tokenizer.json").exists() or (p / "tokenizer_config.json").exists()
    if name_or_path.count("/") == 1:
        return (_hub_cache() / ("models--" + name_or_path.replace("/", "--"))).is_dir()
    return False


def estimate_tokens(text: str) -> int:
    n = len(text)
    wide = (len(text.encode("utf-8")) - n) // 2  # a CJK char is 3 UTF-8 bytes: 2 extra each
    return wide + math.ceil(max(n - wide, 0) / 4)


class TokenCounter:
    """Counts the tokens of (system, turns) samples, exactly or by estimate; see `label`."""

    def __init__(self, name_or_path: str, trust_remote_code: bool = False):
        from persona_studio import basemodel

        self.tokenizer: Any = None
        self.overhead = _TEMPLATE_OVERHEAD
        # A built-in model's tokenizer once it is converted (counting never triggers the conversion).
        local = basemodel.local_path_or_name(name_or_path)
        if tokenizer_is_local(local):
            try:
                from transformers import AutoTokenizer

                self.tokenizer = AutoTokenizer.from_pretrained(
                    local, local_files_only=True, trust_remote_code=trust_remote_code
                )
                self.overhead = self._template_overhead()
            except Exception:  # a broken local copy: fall back to the estimate, labelled as such
                self.tokenizer = None
        self.exact = self.tokenizer is not None
        self.label = (
            f"tokenizer of {name_or_path}"
            if self.exact
            else f"estimate (≈ 1 token per CJK char, 4 other chars per token; {name_or_path} not available locally)"
        )
        self._system_cache: dict[str, int] = {}

    def _template_overhead(self) -> int:
        # What the chat template adds per message, measured once on a two-message chat.
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            return _TEMPLATE_OVERHEAD
        msgs = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}]
        try:
            full = tok.apply_chat_template(msgs, tokenize=True)
            if isinstance(full, dict) or hasattr(full, "keys"):
                full = full["input_ids"]
        except Exception:
            return _TEMPLATE_OVERHEAD
        bare = sum(len(tok(m["content"], add_special_tokens=False)["input_ids"]) for m in msgs)
        return max(0, math.ceil((len(full) - bare) / len(msgs)))

    def _lengths(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if self.tokenizer is None:
            # estimate_tokens over arrays: this runs once per turn of every sample
            import numpy as np

            n = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
            wide = (np.fromiter(map(len, map(str.encode, texts)), dtype=np.int64, count=len(texts)) - n) >> 1
            return (wide + (n - wide + 3) // 4).tolist()
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def count(self, samples: Sequence[tuple[str, Sequence[str]]]) -> list[int]:
        """Tokens of each (system prompt, turn contents) sample, template overhead included."""
        import numpy as np

        if not samples:
            return []
        texts = [c for _, contents in samples for c in contents]
        sizes = np.fromiter(map(len, (contents for _, contents in samples)), dtype=np.int64, count=len(samples))
        per_turn = np.asarray(self._lengths(texts), dtype=np.int64) + self.overhead
        # sum of each sample's turns; a sample with no turns sums to 0
        ends = np.cumsum(sizes)
        running = np.concatenate(([0], np.cumsum(per_turn)))
        totals = running[ends] - running[ends - sizes]
        cache = self._system_cache
        for system, _ in samples:
            if system not in cache:
                cache[system] = (self._lengths([system])[0] + self.overhead) if system else 0
        return (totals + np.fromiter((cache[s] for s, _ in samples), dtype=np.int64, count=len(samples))).tolist()


def report(lengths: Sequence[int], label: str, exact: bool, cutoff_len: int) -> dict[str, Any]:
    """Percentiles, max, how many samples the current cutoff truncates, and a suggested cutoff."""
    if not lengths:
        return {"counter": label, "exact": exact, "samples": 0, "suggested_cutoff_len": None}
    xs = sorted(lengths)
    pct = {f"p{p}": xs[min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1)] for p in PERCENTILES}
    over = len(xs) - _count_le(xs, cutoff_len)
    return {
        "counter": label,
        "exact": exact,
        "samples": len(xs),
        **pct,
        "max": xs[-1],
        "mean": round(sum(xs) / len(xs), 1),
        "cutoff_len": cutoff_len,
        "truncated_at_cutoff": over,
        # Round p99 up to a multiple of 64: covers 99% of samples without padding for outliers.
        "suggested_cutoff_len": max(64, math.ceil(pct["p99"] / 64) * 64),
    }


def _count_le(xs: list[int], v: int) -> int:
    import bisect

    return bisect.bisect_right(xs, v)
