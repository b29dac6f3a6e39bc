"""Review operations on samples: accept, reject, edit — each recorded so it can be undone.

Every action writes one `edits` row (before/after) in the same transaction as the change,
so the history and the data never disagree. An edit changes `turns` but not `hash`: the hash
names the sample as make-dataset produced it, so a re-run recognises it and keeps the edit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from persona_studio.errors import UserError
from persona_studio.store import Store

STATUSES = ("pending", "accepted", "rejected")
ROLES = ("user", "assistant")


class ReviewError(UserError, ValueError):
    pass


@dataclass
class Sample:
    id: int
    persona_id: str
    status: str
    system: str
    turns: list[dict[str, Any]]
    score: float | None
    reason: str
    edited: bool

    @property
    def preview(self) -> str:
        first = next((t["content"] for t in self.turns if t["role"] == "assistant"), "")
        return " ".join(first.split())[:80]


_SELECT = """
SELECT s.id, s.persona_id, s.status, s.system, s.turns,
       (SELECT max(score) FROM scores WHERE sample_id = s.id) AS score,
       coalesce((SELECT reason FROM scores WHERE sample_id = s.id ORDER BY scored_at DESC LIMIT 1), '') AS reason,
       EXISTS(SELECT 1 FROM edits WHERE sample_id = s.id AND action = 'edit' AND undone = 0) AS edited
FROM samples s
"""


def _sample(row: Any) -> Sample:
    return Sample(
        id=row["id"], persona_id=row["persona_id"], status=row["status"], system=row["system"],
        turns=json.loads(row["turns"]), score=row["score"], reason=row["reason"], edited=bool(row["edited"]),
    )


def list_samples(
    store: Store, persona_id: str, *, status: str | None = None, search: str = "", limit: int = 500, offset: int = 0
) -> list[Sample]:
    sql, params = _SELECT + " WHERE s.persona_id = ?", [persona_id]
    if status:
        sql += " AND s.status = ?"
        params.append(status)
    if search:
        sql += " AND s.turns LIKE ?"
        params.append(f"%{search}%")
    sql += " ORDER BY s.id LIMIT ? OFFSET ?"
    params += [limit, offset]
    return [_sample(r) for r in store.query(sql, tuple(params))]


def get_sample(store: Store, sample_id: int) -> Sample:
    rows = store.query(_SELECT + " WHERE s.id = ?", (sample_id,))
    if not rows:
        raise ReviewError(f"sample {sample_id}: no such sample")
    return _sample(rows[0])


def counts(store: Store, persona_id: str) -> dict[str, int]:
    out = dict.fromkeys(STATUSES, 0)
    for r in store.query("SELECT status, count(*) n FROM samples WHERE persona_id=? GROUP BY status", (persona_id,)):
        out[r["status"]] = r["n"]
    return out


def score_histogram(store: Store, persona_id: str) -> dict[str, int]:
    """Samples per judge score 1–5 (rounded), plus those nobody scored."""
    hist = {str(i): 0 for i in range(1, 6)} | {"unscored": 0}
    rows = store.query(
        "SELECT CAST(round((SELECT max(score) FROM scores WHERE sample_id = s.id)) AS INTEGER) b, count(*) n"
        " FROM samples s WHERE s.persona_id = ? GROUP BY b",
        (persona_id,),
    )
    for r in rows:
        hist["unscored" if r["b"] is None else str(min(5, max(1, r["b"])))] += r["n"]
    return hist


def blocked_summary(store: Store, persona_id: str) -> list[tuple[str, int]]:
    """Blocked words with their hit counts, from the latest make-dataset run."""
    rows = store.query(
        "SELECT word, count(*) n FROM blocked_hits WHERE persona_id = ? AND run_id IS"
        " (SELECT max(run_id) FROM blocked_hits WHERE persona_id = ?) GROUP BY word ORDER BY n DESC, word",
        (persona_id, persona_id),
    )
    return [(r["word"], r["n"]) for r in rows]


def blocked_hits(store: Store, persona_id: str, word: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    sql = (
        "SELECT word, text, sample_hash FROM blocked_hits WHERE persona_id = ? AND run_id IS"
        " (SELECT max(run_id) FROM blocked_hits WHERE persona_id = ?)"
    )
    params: list[Any] = [persona_id, persona_id]
    if word:
        sql += " AND word = ?"
        params.append(word)
    sql += " ORDER BY id LIMIT ?"
    params.append(limit)
    return [dict(r) for r in store.query(sql, tuple(params))]


def _check_owner(row: Any, sample_id: int, persona: str | None) -> None:
    """A sample id from the user must name a sample of the persona they named: ids are global,
    so `review --persona bob accept 7` must not touch sample 7 when it is alice's."""
    if row is None:
        raise ReviewError(f"sample {sample_id}: no such sample")
    if persona is not None and row["persona_id"] != persona:
        raise ReviewError(f"sample {sample_id}: not a sample of persona {persona!r} (nothing changed)")


def set_status(store: Store, sample_ids: list[int], status: str, *, persona: str | None = None) -> int:
    """Accept or reject (or reset to pending) samples; returns how many changed. With `persona`,
    every id must be one of that persona's samples, or nothing changes."""
    if status not in STATUSES:
        raise ReviewError(f"status {status!r}: must be one of {', '.join(STATUSES)}")
    action = {"accepted": "accept", "rejected": "reject", "pending": "reset"}[status]
    changed = 0
    with store.tx() as db:
        for sid in sample_ids:
            row = db.execute("SELECT status, persona_id FROM samples WHERE id = ?", (sid,)).fetchone()
            _check_owner(row, sid, persona)
            if row["status"] == status:
                continue
            db.execute("UPDATE samples SET status = ? WHERE id = ?", (status, sid))
            db.execute(
                "INSERT INTO edits(sample_id, action, before, after) VALUES (?, ?, ?, ?)",
                (sid, action, json.dumps({"status": row["status"]}), json.dumps({"status": status})),
            )
            changed += 1
    return changed


def validate_turns(turns: Any) -> list[dict[str, str]]:
    if not isinstance(turns, list) or not turns:
        raise ReviewError("a sample needs at least one turn")
    out = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or t.get("role") not in ROLES or not isinstance(t.get("content"), str):
            raise ReviewError(f"turn {i + 1}: needs role user|assistant and text")
        if not t["content"].strip():
            raise ReviewError(f"turn {i + 1}: empty text")
        out.append({k: v for k, v in t.items() if k in ("role", "content", "name")})
    if not any(t["role"] == "assistant" for t in out):
        raise ReviewError("a sample needs at least one assistant turn (the persona's line)")
    return out


def edit_sample(store: Store, sample_id: int, turns: list[dict[str, Any]], pii: Any = None, *,
                persona: str | None = None) -> None:
    """Replace a sample's turns. An edited persona turn also becomes a preference pair (the
    original as rejected), redacted by `pii` (make_dataset.pii; None = the default rules).
    With `persona`, the sample must be that persona's."""
    turns = validate_turns(turns)
    with store.tx() as db:
        row = db.execute("SELECT turns, persona_id FROM samples WHERE id = ?", (sample_id,)).fetchone()
        _check_owner(row, sample_id, persona)
        after = json.dumps(turns, ensure_ascii=False)
        if json.loads(row["turns"]) == turns:
            return
        db.execute("UPDATE samples SET turns = ?, n_turns = ?, n_tokens = NULL WHERE id = ?",
                   (after, len(turns), sample_id))
        db.execute(
            "INSERT INTO edits(sample_id, action, before, after) VALUES (?, 'edit', ?, ?)",
            (sample_id, json.dumps({"turns": json.loads(row["turns"])}, ensure_ascii=False),
             json.dumps({"turns": turns}, ensure_ascii=False)),
        )
        from persona_studio.prefs.store import sync_review_pairs

        sync_review_pairs(db, sample_id, pii)


def undo(store: Store, persona_id: str, pii: Any = None) -> dict[str, Any] | None:
    """Undo the persona's most recent review action; returns what was undone, or None."""
    with store.tx() as db:
        row = db.execute(
            "SELECT e.id, e.sample_id, e.action, e.before FROM edits e JOIN samples s ON s.id = e.sample_id"
            " WHERE s.persona_id = ? AND e.undone = 0 ORDER BY e.id DESC LIMIT 1",
            (persona_id,),
        ).fetchone()
        if row is None:
            return None
        before = json.loads(row["before"])
        if "status" in before:
            db.execute("UPDATE samples SET status = ? WHERE id = ?", (before["status"], row["sample_id"]))
        if "turns" in before:
            db.execute("UPDATE samples SET turns = ?, n_turns = ?, n_tokens = NULL WHERE id = ?",
                       (json.dumps(before["turns"], ensure_ascii=False), len(before["turns"]), row["sample_id"]))
        db.execute("UPDATE edits SET undone = 1 WHERE id = ?", (row["id"],))
        if "turns" in before:  # the sample's review pairs follow its text
            from persona_studio.prefs.store import sync_review_pairs

            sync_review_pairs(db, row["sample_id"], pii)
    return {"edit_id": row["id"], "sample_id": row["sample_id"], "action": row["action"]}


def turns_to_text(turns: list[dict[str, Any]]) -> str:
    """An editable plain-text form: one `role: text` block per turn, blank line between."""
    return "\n\n".join(f"{t['role']}: {t['content']}" for t in turns)


def text_to_turns(text: str) -> list[dict[str, str]]:
    turns: list[dict[str, str]] = []
    for line in text.splitlines():
        head, sep, rest = line.partition(":")
        if sep and head.strip() in ROLES:
            turns.append({"role": head.strip(), "content": rest.strip()})
        elif turns:
            turns[-1]["content"] += "\n" + line
        elif line.strip():
            raise ReviewError(f"line 1: start with 'user:' or 'assistant:', got {line[:30]!r}")
    for t in turns:
        t["content"] = t["content"].strip()
    return validate_turns(turns)
