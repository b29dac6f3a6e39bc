"""Sample identity: the hash of system prompt + turns, used for dedup and to keep review work.

`samples.hash` is the hash of the sample *as generated* by make-dataset. Review edits change
`samples.turns` but never the hash, so a re-run that generates the same sample again finds the
row (and its edits and decision) by hash and leaves it alone.

The hash is taken over the same JSON text that is stored in `samples.turns`, so each sample is
encoded once. make-dataset builds turn dicts in one fixed key order, so equal samples give equal
text.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections.abc import Callable
from typing import Any


def _fast_encoder() -> Callable[[Any], str]:
    # json.dumps builds a new encoder per call, which costs more than encoding a small list of
    # turns; the C encoder built once is ~3x faster. Fall back where the C accelerator is absent.
    c_make = getattr(json.encoder, "c_make_encoder", None)
    if c_make is None:
        enc = json.JSONEncoder(ensure_ascii=False)
        return enc.encode

    def default(o: Any) -> Any:
        raise TypeError(f"not JSON serializable: {type(o).__name__}")

    c = c_make(None, default, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)
    return lambda obj: "".join(c(obj, 0))


dumps: Callable[[Any], str] = _fast_encoder()
encode_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]  # '"…"', as dumps


def sample_hash(system: str, turns_json: str) -> str:
    return sample_hashes(system, [turns_json.encode()])[0]


def sample_hashes(system: str, turns_utf8: list[bytes]) -> list[str]:
    """`sample_hash` of many samples whose turns JSON is already UTF-8 (how make-dataset has them)."""
    prefix = (system + "\x00").encode()
    sha256 = hashlib.sha256
    return [sha256(s).hexdigest()[:32] for s in map(prefix.__add__, turns_utf8)]


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
