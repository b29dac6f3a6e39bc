"""Carry human review work over to re-made samples when make-dataset re-splits conversations.

A sample keeps its row (status, edits) as long as make-dataset makes it again with the same
hash. Change the sessionize settings and the same messages fall into other samples: the old
rows would be deleted as stale, and with them a reviewer's accept/reject and edits. Before that
happens, this module matches the new samples to the old reviewed ones by content:

- a turn is known by (role, text as make-dataset wrote it): for an edited sample, the text
  before its first live edit, since the re-made samples hold the unedited text;
- a new sample takes an old status when every one of its turns comes from old samples that
  all had that status (a split or merge of accepted samples stays accepted; content nobody
  reviewed keeps its sample pending);
- an edit that replaced turn texts (same turns and roles) is replayed on every new sample
  holding one of those turns, recorded as an edit of the new sample (so undo and the edited
  mark work as for any edit).

Old reviewed samples none of whose work reached a new sample would be lost: make-dataset then
refuses, naming them, unless run with --force.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from persona_studio.errors import UserError

TurnKey = tuple[str, str]


class ReviewWorkWouldBeLost(UserError, RuntimeError):
    """make-dataset would drop review work it cannot carry over; nothing was changed."""


@dataclass
class _Old:
    id: int
    status: str
    original: list[dict[str, Any]]  # turns as make-dataset made them
    current: list[dict[str, Any]]  # turns now (edited or not)
    edited: bool
    replacements: dict[TurnKey, str] | None = None  # None: an edit that changed the turn structure
    status_carried: bool = False
    edits_applied: set[TurnKey] = field(default_factory=set)

    @property
    def carried(self) -> bool:
        """Did all of this sample's human work reach some new sample?"""
        if self.status != "pending" and not self.status_carried:
            return False
        if not self.edited:
            return True
        # An edit that added or removed turns has no place in differently cut samples.
        return self.replacements is not None and self.edits_applied >= self.replacements.keys()


@dataclass
class CarryReport:
    status: int = 0  # new samples that took an old status
    edits: int = 0  # new samples that took an old edit
    lost: list[_Old] = field(default_factory=list)

    def to_dict(self) -> dict[str, int]:
        return {"carried_status": self.status, "carried_edits": self.edits, "dropped": len(self.lost)}


def _key(turn: dict[str, Any]) -> TurnKey:
    return (str(turn.get("role", "")), str(turn.get("content", "")))


def _replacements(original: list[dict[str, Any]], current: list[dict[str, Any]]) -> dict[TurnKey, str] | None:
    if len(original) != len(current) or any(a.get("role") != b.get("role") for a, b in zip(original, current,
                                                                                          strict=True)):
        return None
    return {_key(a): str(b.get("content", "")) for a, b in zip(original, current, strict=True)
            if a.get("content") != b.get("content")}


def _reviewed_stale(db: sqlite3.Connection, persona_id: str, run_id: int) -> list[_Old]:
    """The persona's import samples this run did not make again that carry human work."""
    rows = db.execute(
        "SELECT s.id, s.status, s.turns,"
        " (SELECT e.before FROM edits e WHERE e.sample_id = s.id AND e.action = 'edit' AND e.undone = 0"
        "  ORDER BY e.id LIMIT 1) AS first_edit"
        " FROM samples s WHERE s.persona_id = ? AND s.source = 'import' AND (s.run_id IS NULL OR s.run_id != ?)"
        " AND (s.status != 'pending' OR EXISTS (SELECT 1 FROM edits e WHERE e.sample_id = s.id"
        "      AND e.action = 'edit' AND e.undone = 0))",
        (persona_id, run_id),
    ).fetchall()
    out = []
    for sid, status, turns, first_edit in rows:
        current = json.loads(turns)
        original = json.loads(first_edit)["turns"] if first_edit else current
        old = _Old(sid, status, original, current, edited=first_edit is not None)
        if old.edited:
            old.replacements = _replacements(original, current)
        out.append(old)
    return out


def carry_review(db: sqlite3.Connection, persona_id: str, run_id: int, first_new_id: int, force: bool,
                 pii: Any = None) -> CarryReport:
    """Match this run's new samples (ids from `first_new_id`) to the stale reviewed ones and
    carry status and edits over; raise ReviewWorkWouldBeLost (before any change) if some
    work cannot be carried and `force` is off. Runs inside make-dataset's transaction."""
    report = CarryReport()
    olds = _reviewed_stale(db, persona_id, run_id)
    if not olds:
        return report
    owners: dict[TurnKey, list[_Old]] = {}
    for old in olds:
        for turn in old.original:
            owners.setdefault(_key(turn), []).append(old)
    updates: list[tuple[int, str | None, list[dict[str, Any]] | None, list[dict[str, Any]]]] = []
    for sid, turns_json in db.execute(
        "SELECT id, turns FROM samples WHERE persona_id = ? AND run_id = ? AND id >= ?",
        (persona_id, run_id, first_new_id),
    ):
        turns = json.loads(turns_json)
        sources = [owners.get(_key(t)) for t in turns]
        if not any(sources):
            continue  # content no reviewer saw
        status = None
        statuses = {o.status for found in sources if found for o in found}
        if all(sources) and len(statuses) == 1 and (only := statuses.pop()) != "pending":
            status = only
            for found in sources:
                for o in found or ():
                    o.status_carried = True
        edited = None
        for i, turn in enumerate(turns):
            key = _key(turn)
            for o in sources[i] or ():
                new_text = (o.replacements or {}).get(key)
                if new_text is not None:
                    edited = edited or [dict(t) for t in turns]
                    edited[i]["content"] = new_text
                    o.edits_applied.add(key)
                    break
        if status or edited:
            updates.append((sid, status, edited, turns))
    report.lost = [o for o in olds if not o.carried]
    if report.lost and not force:
        raise ReviewWorkWouldBeLost(_lost_message(persona_id, report.lost))
    for sid, status, edited, turns in updates:
        if status:
            db.execute("UPDATE samples SET status = ? WHERE id = ?", (status, sid))
            report.status += 1
        if edited:
            db.execute("UPDATE samples SET turns = ?, n_turns = ?, n_tokens = NULL WHERE id = ?",
                       (json.dumps(edited, ensure_ascii=False), len(edited), sid))
            db.execute("INSERT INTO edits(sample_id, action, before, after) VALUES (?, 'edit', ?, ?)",
                       (sid, json.dumps({"turns": turns}, ensure_ascii=False),
                        json.dumps({"turns": edited}, ensure_ascii=False)))
            _sync_pairs(db, sid, pii)
            report.edits += 1
    return report


def _sync_pairs(db: sqlite3.Connection, sample_id: int, pii: Any) -> None:
    # A carried edit is a review edit like any other: its preference pairs follow (prefs/).
    try:
        from persona_studio.prefs.store import sync_review_pairs
    except ImportError:  # pragma: no cover - prefs is optional to this module
        return
    sync_review_pairs(db, sample_id, pii)


def _lost_message(persona_id: str, lost: list[_Old]) -> str:
    kinds = {"accepted": 0, "rejected": 0, "edited": 0}
    for o in lost:
        if o.status in kinds:
            kinds[o.status] += 1
        if o.edited:
            kinds["edited"] += 1
    what = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
    ids = ", ".join(str(o.id) for o in lost[:10]) + (", …" if len(lost) > 10 else "")
    return (f"make-dataset for {persona_id!r} would drop the review work on {len(lost)} sample(s) the current "
            f"settings no longer make ({what}; sample ids {ids}) and that could not be matched to new "
            "samples; nothing was changed: restore the settings, or re-run with --force to drop it")
