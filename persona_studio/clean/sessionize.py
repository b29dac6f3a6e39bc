"""Turn a stream of cleaned text messages into training conversations.

Rules (times in seconds; `make_dataset` settings give minutes):
- A *turn* is a run of messages of one role. The next message joins the current turn when it
  has the same role and comes within `single_combine_time_window` of the previous one.
- A message of the other role within `qa_match_time_window` starts the next turn of the same
  conversation (multi-turn); a longer gap starts a new conversation.
- Same role but later than the combine window: the conversation is cut there. Merging it would
  break the window rule, and keeping two same-role turns in a row breaks the user/assistant
  alternation chat templates and trainers expect.
- Non-text messages are ignored or cut the conversation (`non_text`), handled by the caller
  through `cut()`.
- In group chats several people can be on the `user` side of one turn: then every line is
  prefixed with its speaker ("Alice: …"); a one-speaker user turn carries the speaker in `name`.
  Either way other speakers' names survive, so per-persona data can be cut from one group log.
Finished conversations become samples: a turn shorter than `min_turn_chars` or longer than
`max_turn_chars` cuts the conversation; conversations longer than `max_turns` are split (each
piece after the first starts with a user turn); trailing user turns (no reply) are dropped and
a piece with no assistant turn is no sample at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

Turns = list[dict[str, Any]]


@dataclass(frozen=True)
class Rules:
    combine_s: float = 120.0
    qa_s: float = 300.0
    separator: str = "\n"
    min_chars: int = 1
    max_chars: int = 2000
    max_turns: int = 20

    @classmethod
    def from_settings(cls, md: Any) -> Rules:
        return cls(
            combine_s=md.single_combine_time_window * 60.0,
            qa_s=md.qa_match_time_window * 60.0,
            separator=md.combine_separator,
            min_chars=md.min_turn_chars,
            max_chars=md.max_turn_chars,
            max_turns=md.max_turns,
        )


class _Turn:
    __slots__ = ("role", "speakers", "lines", "last_ts")

    def __init__(self, role: str, speaker: str, text: str, ts: float | None):
        self.role = role
        self.speakers = [speaker]
        self.lines = [(speaker, text)]
        self.last_ts = ts

    def finish(self, sep: str) -> dict[str, Any]:
        lines = self.lines
        if len(lines) == 1:  # most turns are one message: no join
            content = lines[0][1]
        elif self.role == "user" and len(self.speakers) > 1:
            return {"role": "user", "content": sep.join([f"{s}: {t}" for s, t in lines])}
        else:
            content = sep.join([t for _, t in lines])
        turn: dict[str, Any] = {"role": self.role, "content": content}
        if self.role == "user" and self.speakers[0]:
            turn["name"] = self.speakers[0]
        return turn


class _Conv:
    __slots__ = ("serial", "turns", "last_ts")

    def __init__(self, serial: int):
        self.serial = serial
        self.turns: list[_Turn] = []
        self.last_ts: float | None = None


class Sessionizer:
    """Feeds messages per chat (`key`); finished conversations collect in `done`.

    `done` holds (key, serial, samples) tuples; the caller drains it. `serial` numbers the
    conversations of one key, so the caller can tie side records (blocked-word hits) to the
    samples of the conversation they happened in.
    """

    def __init__(self, rules: Rules):
        self.rules = rules
        self.open: dict[Hashable, _Conv] = {}
        self.done: list[tuple[Hashable, int, list[Turns]]] = []
        self.counts: Counter[str] = Counter()
        self._serial = 0
        # Read once per message in `add`: plain attributes, not a lookup through `rules`.
        self._qa_s = rules.qa_s
        self._combine_s = rules.combine_s

    def _conv(self, key: Hashable, ts: float | None) -> _Conv:
        conv = self.open.get(key)
        if conv is not None and conv.turns and ts is not None and conv.last_ts is not None:
            if ts - conv.last_ts > self.rules.qa_s:
                self.close(key)
                conv = None
        if conv is None:
            self._serial += 1
            conv = self.open[key] = _Conv(self._serial)
        return conv

    def touch(self, key: Hashable, ts: float | None) -> int:
        """A message that is removed but was part of the talk: apply the gap rule, return the serial."""
        conv = self._conv(key, ts)
        if ts is not None:
            conv.last_ts = ts
        return conv.serial

    def add(self, key: Hashable, ts: float | None, speaker: str, is_me: bool, text: str) -> int:
        # Hot path (once per message): the common case, an open conversation, is inlined.
        conv = self.open.get(key)
        if conv is None or (ts is not None and conv.last_ts is not None and ts - conv.last_ts > self._qa_s):
            conv = self._conv(key, ts)
        role = "assistant" if is_me else "user"
        turns = conv.turns
        if turns:
            last = turns[-1]
            if last.role == role:
                gap = 0.0 if ts is None or last.last_ts is None else ts - last.last_ts
                if gap <= self._combine_s:
                    last.lines.append((speaker, text))
                    if speaker not in last.speakers:
                        last.speakers.append(speaker)
                    last.last_ts = ts
                    conv.last_ts = ts
                    return conv.serial
                self.counts["cut_same_role_gap"] += 1
                self.close(key)
                conv = self._conv(key, ts)
                turns = conv.turns
        turns.append(_Turn(role, speaker, text, ts))
        conv.last_ts = ts
        return conv.serial

    def cut(self, key: Hashable) -> None:
        if key in self.open:
            self.close(key)

    def close(self, key: Hashable) -> None:
        conv = self.open.pop(key, None)
        if conv is None or not conv.turns:
            return
        sep = self.rules.separator
        self.done.append((key, conv.serial, self._samples([t.finish(sep) for t in conv.turns])))

    def close_all(self) -> None:
        for key in list(self.open):
            self.close(key)

    def _samples(self, turns: Turns) -> list[Turns]:
        r = self.rules
        # Fast path (most conversations): a short exchange, every turn in bounds, ending on a reply.
        if len(turns) <= r.max_turns and turns[-1]["role"] == "assistant":
            lo, hi = r.min_chars, r.max_chars
            for t in turns:  # a plain loop: all() over a generator costs more for 2-3 turns
                if not lo <= len(t["content"]) <= hi:
                    break
            else:
                return [turns]
        out: list[Turns] = []
        seg: Turns = []
        for t in turns:
            n = len(t["content"])
            if n < r.min_chars or n > r.max_chars:
                self.counts["turn_too_short" if n < r.min_chars else "turn_too_long"] += 1
                self._split(seg, out)
                seg = []
            else:
                seg.append(t)
        self._split(seg, out)
        return out

    def _split(self, seg: Turns, out: list[Turns]) -> None:
        mx = self.rules.max_turns
        while seg:
            chunk = seg[:mx]
            if len(seg) > mx and chunk[-1]["role"] == "user" and len(chunk) > 1:
                chunk = chunk[:-1]  # the next piece should open with this user turn
            seg = seg[len(chunk):]
            while chunk and chunk[-1]["role"] == "user":
                chunk.pop()
                self.counts["trailing_user_turn"] += 1
            if any(t["role"] == "assistant" for t in chunk):
                out.append(chunk)
            else:
                self.counts["no_reply"] += 1
