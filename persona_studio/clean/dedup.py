"""Sample identity: the hash of system prompt + turns, used for dedup and to keep review work.

`samples.hash` is the hash of the sample *as generated* by make-dataset. Review edits change
`samples.turns` but never the hash, so a re-run that generates the same sample again finds the
row (and its edits and decision) by hash and leaves it alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def sample_hash(system: str, turns: list[dict[str, Any]]) -> str:
    blob = json.dumps([system, turns], ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class Dedup:
    """Remembers hashes seen in one run.

    enabled: a repeated sample is reported as a duplicate (and dropped by the caller).
    disabled: a repeat gets a distinct, stable hash (`<hash>#2`, …) so it can be stored beside the
    first under UNIQUE(persona_id, hash) and still keeps its review state across runs.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._seen: dict[str, int] = {}

    def check(self, h: str) -> str | None:
        """The hash to store the sample under, or None when it is a duplicate to drop."""
        n = self._seen.get(h, 0) + 1
        self._seen[h] = n
        if n == 1:
            return h
        return None if self.enabled else f"{h}#{n}"
