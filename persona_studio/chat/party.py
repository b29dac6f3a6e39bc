"""Tea-party speaker choice: pure functions of the history and a seeded RNG (no engine, no store).

Strategies, as group-chat front ends define them:
  natural  members named in the last message answer first (in the order they are named), then
           each other member speaks with probability `talkativeness`; if that picks nobody, one
           random member speaks. The last speaker never answers itself unless allow_self.
  list     everyone once, in member order (the last speaker moves to the end unless allow_self).
  pooled   one random member who hasn't spoken since the user's last message (any member
           other than the last speaker once everyone has).
  manual   nobody speaks on their own; the user picks (force talk works with every strategy).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

STRATEGIES = ("natural", "list", "pooled", "manual")
USER = "user"  # the speaker id of the human in the history


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    talkativeness: float = 0.5


@dataclass(frozen=True)
class Line:
    """One entry of the shared history: who spoke (a member id, or USER) and what."""

    speaker: str
    text: str


def mentioned(text: str, members: Sequence[Member]) -> list[str]:
    """Ids of members whose name (or id) appears as a word in `text`, in order of first mention."""
    hits: list[tuple[int, str]] = []
    for m in members:
        positions = []
        for word in {m.name, m.id}:
            if not word:
                continue
            if word.isascii():
                found = re.search(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", text, flags=re.IGNORECASE)
                pos = found.start() if found else -1
            else:  # CJK text has no spaces between words: a plain substring is the mention
                pos = text.find(word)
            if pos >= 0:
                positions.append(pos)
        if positions:
            hits.append((min(positions), m.id))
    return [mid for _, mid in sorted(hits)]


def natural(
    members: Sequence[Member], history: Sequence[Line], rng: random.Random, allow_self: bool = False
) -> list[str]:
    last = history[-1] if history else None
    banned = {last.speaker} if last is not None and not allow_self else set()
    order: list[str] = []
    if last is not None:
        order = [mid for mid in mentioned(last.text, members) if mid not in banned]
    for m in members:
        if m.id in order or m.id in banned:
            continue
        if rng.random() < m.talkativeness:
            order.append(m.id)
    if not order:
        pool = [m.id for m in members if m.id not in banned] or [m.id for m in members]
        order = [rng.choice(pool)]
    return order


def list_order(members: Sequence[Member], history: Sequence[Line], allow_self: bool = False) -> list[str]:
    ids = [m.id for m in members]
    last = history[-1].speaker if history else None
    if last in ids and not allow_self and len(ids) > 1:
        ids.remove(last)
        ids.append(last)
    return ids


def pooled(
    members: Sequence[Member], history: Sequence[Line], rng: random.Random, allow_self: bool = False
) -> list[str]:
    spoken: set[str] = set()
    for line in reversed(history):
        if line.speaker == USER:
            break
        spoken.add(line.speaker)
    last = history[-1].speaker if history else None
    pool = [m.id for m in members if m.id not in spoken]
    if not pool:
        pool = [m.id for m in members if allow_self or m.id != last] or [m.id for m in members]
    return [rng.choice(pool)]


def next_speakers(
    strategy: str,
    members: Sequence[Member],
    history: Sequence[Line],
    rng: random.Random,
    *,
    allow_self: bool = False,
) -> list[str]:
    """Who answers the last line of `history`, in speaking order (a "round")."""
    if not members:
        return []
    if strategy == "natural":
        return natural(members, history, rng, allow_self)
    if strategy == "list":
        return list_order(members, history, allow_self)
    if strategy == "pooled":
        return pooled(members, history, rng, allow_self)
    if strategy == "manual":
        return []
    raise ValueError(f"unknown party strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})")
