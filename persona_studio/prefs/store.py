"""The `preferences` table: one row per (context, chosen reply, rejected reply), with its source.

    source       where the preference was expressed          keyed by (one pair per key)
    chat_edit    a persona's chat reply edited by the user     chat_message_id
    swipe        the swipe kept and continued from, against    (chat_message_id = kept,
                 each swipe passed over                         rejected_message_id = passed over)
    review_edit  a sample's persona turn edited in review      (sample_id, turn)
    import_dpo   a DPO dataset record (chosen/rejected)        import_id
    import_kto   KTO records (label) paired under one prompt   import_id

`prompt` is the conversation before the reply as JSON turns {role, content, speaker?} seen from
the persona: its own lines are `assistant`, everyone else's `user`. Every text is redacted with the
make-dataset PII rules when stored (a pair holding a 'drop' kind is not stored), and again with
the workspace's current rules when it is trained on or exported.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from persona_studio.errors import UserError

SOURCES = ("chat_edit", "swipe", "review_edit", "import_dpo", "import_kto")
USER_NAME = "User"


class PrefError(UserError, ValueError):
    """A one-line problem with a preference pair or a preference request."""


@dataclass
class Pair:
    id: int
    persona_id: str
    source: str
    system: str
    prompt: list[dict[str, Any]]
    chosen: str
    rejected: str
    chat_message_id: int | None = None
    rejected_message_id: int | None = None
    sample_id: int | None = None
    turn: int | None = None
    import_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def messages(self, default_system: str = "") -> list[dict[str, str]]:
        """The prompt as chat messages (system first: the pair's own, else `default_system`)."""
        system = self.system or default_system
        head = [{"role": "system", "content": system}] if system else []
        return head + [{"role": t["role"], "content": t["content"]} for t in self.prompt]

    @property
    def context(self) -> str:
        """The last line before the reply, one line, for lists."""
        last = self.prompt[-1]["content"] if self.prompt else ""
        return " ".join(last.split())


def _dumps(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def _pair(row: Any) -> Pair:
    return Pair(
        id=row["id"], persona_id=row["persona_id"], source=row["source"], system=row["system"],
        prompt=json.loads(row["prompt"]), chosen=row["chosen"], rejected=row["rejected"],
        chat_message_id=row["chat_message_id"], rejected_message_id=row["rejected_message_id"],
        sample_id=row["sample_id"], turn=row["turn"], import_id=row["import_id"], meta=json.loads(row["meta"]),
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


# -- redaction ---------------------------------------------------------------------------------
class Redact:
    """The make-dataset PII rules (clean/pii.py's public Redactor) applied to a whole pair."""

    def __init__(self, pii: Any = None):
        from persona_studio.clean.pii import Redactor
        from persona_studio.settings import PiiArgs

        self.redactor = Redactor(pii if pii is not None else PiiArgs())

    def text(self, text: str, counts: dict[str, int]) -> str | None:
        out, found = self.redactor.apply(text)
        for k, n in found.items():
            counts[k] = counts.get(k, 0) + n
        return out

    def pair(
        self, system: str, prompt: list[dict[str, Any]], chosen: str, rejected: str
    ) -> tuple[str, list[dict[str, Any]], str, str, dict[str, int]] | None:
        """The pair redacted, with counts per kind; None when it holds a kind whose action is 'drop'."""
        counts: dict[str, int] = {}
        texts = [self.text(t, counts) for t in (system, chosen, rejected)]
        turns = []
        for t in prompt:
            content = self.text(t["content"], counts)
            if content is None:
                return None
            turns.append({**t, "content": content})
        if any(t is None for t in texts):
            return None
        s, c, r = texts
        assert s is not None and c is not None and r is not None
        return s, turns, c, r, counts


def _redacted(pii: Any, system: str, prompt: list[dict[str, Any]], chosen: str, rejected: str,
              meta: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str, str, dict[str, Any]] | None:
    done = Redact(pii).pair(system, prompt, chosen, rejected)
    if done is None:
        return None
    s, p, c, r, counts = done
    return s, p, c, r, ({**meta, "pii": counts} if counts else meta)


def _insert(db: sqlite3.Connection, persona_id: str, source: str, system: str, prompt: list[dict[str, Any]],
            chosen: str, rejected: str, meta: dict[str, Any], *, ignore: bool = False, **keys: Any) -> int | None:
    cols = ["persona_id", "source", "system", "prompt", "chosen", "rejected", "meta", *keys]
    vals = [persona_id, source, system, _dumps(prompt), chosen, rejected, _dumps(meta), *keys.values()]
    verb = "INSERT OR IGNORE" if ignore else "INSERT"
    cur = db.execute(f"{verb} INTO preferences ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals)
    return int(cur.lastrowid) if cur.rowcount else None


# -- chat: edits and swipes --------------------------------------------------------------------
def chat_prompt(path: Sequence[Any], persona_id: str) -> list[dict[str, Any]]:
    """Chat messages (root to just before a reply) as prompt turns seen from `persona_id`, the way
    chat/prompt.py shows them to the model: its own lines are assistant turns, the rest user turns
    ("Name: text", consecutive ones merged, when more than one other speaker takes part)."""
    speakers = {m.speaker for m in path if m.role == "assistant" and m.speaker != persona_id}
    group = bool(speakers)
    out: list[dict[str, Any]] = []
    for m in path:
        if m.role == "system":
            continue
        if m.role == "assistant" and m.speaker == persona_id:
            out.append({"role": "assistant", "speaker": m.speaker, "content": m.content})
            continue
        name = USER_NAME if m.role == "user" else (m.meta or {}).get("name", m.speaker)
        line = f"{name}: {m.content}" if group else m.content
        if group and out and out[-1]["role"] == "user":  # merged, as chat/prompt.py does for strict templates
            out[-1] = {**out[-1], "speaker": "", "content": out[-1]["content"] + "\n" + line}
        else:
            out.append({"role": "user", "speaker": m.speaker, "content": line})
    return out


def record_chat_edit(db: sqlite3.Connection, *, persona_id: str, message_id: int, prompt: list[dict[str, Any]],
                     original: str, edited: str, pii: Any = None, meta: dict[str, Any] | None = None) -> int | None:
    """One pair per edited reply: the model's original (rejected) against the latest edit (chosen).
    Editing back to the original removes the pair."""
    db.execute("DELETE FROM preferences WHERE source = 'chat_edit' AND chat_message_id = ?", (message_id,))
    if edited.strip() == original.strip() or not edited.strip() or not original.strip():
        return None
    done = _redacted(pii, "", prompt, edited, original, meta or {})
    if done is None:
        return None
    s, p, c, r, m = done
    return _insert(db, persona_id, "chat_edit", s, p, c, r, m, chat_message_id=message_id)


def record_swipe_choice(db: sqlite3.Connection, *, persona_id: str, kept: Any, passed: Sequence[Any],
                        prompt: list[dict[str, Any]], pii: Any = None) -> int:
    """The user continued from swipe `kept`: it is chosen over every other swipe in `passed`.
    The latest choice wins: pairs that preferred one of `passed` over `kept` are removed."""
    others = [m for m in passed if m.id != kept.id and m.content.strip() and m.content.strip() != kept.content.strip()]
    if not others or not kept.content.strip():
        return 0
    ids = [m.id for m in others]
    db.execute(
        f"DELETE FROM preferences WHERE source = 'swipe' AND rejected_message_id = ?"
        f" AND chat_message_id IN ({','.join('?' * len(ids))})", (kept.id, *ids),
    )
    n = 0
    for m in others:
        done = _redacted(pii, "", prompt, kept.content, m.content, {"chat_id": kept.chat_id})
        if done is None:
            continue
        s, p, c, r, meta = done
        if _insert(db, persona_id, "swipe", s, p, c, r, meta, ignore=True,
                   chat_message_id=kept.id, rejected_message_id=m.id) is not None:
            n += 1
    return n


# -- review edits ------------------------------------------------------------------------------
def sync_review_pairs(db: sqlite3.Connection, sample_id: int, pii: Any = None) -> int:
    """Rebuild the sample's review pairs: for every persona turn that differs from the sample as
    make-dataset made it (the `before` of its first edit), original = rejected, current = chosen."""
    row = db.execute("SELECT persona_id, system, turns FROM samples WHERE id = ?", (sample_id,)).fetchone()
    first = db.execute(
        "SELECT before FROM edits WHERE sample_id = ? AND action = 'edit' ORDER BY id LIMIT 1", (sample_id,)
    ).fetchone()
    db.execute("DELETE FROM preferences WHERE source = 'review_edit' AND sample_id = ?", (sample_id,))
    if row is None or first is None:
        return 0
    original = json.loads(first["before"]).get("turns") or []
    current = json.loads(row["turns"])
    n = 0
    for i, (old, new) in enumerate(zip(original, current, strict=False)):
        if old.get("role") != new.get("role"):
            break  # turns were added or removed before here: no reliable alignment past this point
        if new["role"] != "assistant" or old["content"].strip() == new["content"].strip():
            continue
        prompt = [{"role": t["role"], "content": t["content"]} for t in current[:i]]
        done = _redacted(pii, row["system"] or "", prompt, new["content"], old["content"], {})
        if done is None:
            continue
        s, p, c, r, meta = done
        _insert(db, row["persona_id"], "review_edit", s, p, c, r, meta, sample_id=sample_id, turn=i)
        n += 1
    return n


# -- imports -----------------------------------------------------------------------------------
def insert_imported(db: sqlite3.Connection, persona_id: str, import_id: int, source: str,
                    pairs: Iterable[dict[str, Any]], pii: Any = None) -> tuple[int, int]:
    """(stored, dropped for PII) for pairs {system, prompt, chosen, rejected, meta} read from a file."""
    stored = dropped = 0
    redact = Redact(pii)
    for pr in pairs:
        done = redact.pair(pr.get("system", ""), pr["prompt"], pr["chosen"], pr["rejected"])
        if done is None:
            dropped += 1
            continue
        s, p, c, r, counts = done
        meta = {**pr.get("meta", {}), **({"pii": counts} if counts else {})}
        _insert(db, persona_id, source, s, p, c, r, meta, import_id=import_id)
        stored += 1
    return stored, dropped


# -- reading and changing ----------------------------------------------------------------------
def list_pairs(store: Any, persona_id: str | None = None, *, source: str | None = None, search: str = "",
               limit: int = 500, offset: int = 0) -> list[Pair]:
    if source is not None and source not in SOURCES:
        raise PrefError(f"source {source!r}: must be one of {', '.join(SOURCES)}")
    sql, params = "SELECT * FROM preferences WHERE 1", []
    if persona_id is not None:
        sql += " AND persona_id = ?"
        params.append(persona_id)
    if source:
        sql += " AND source = ?"
        params.append(source)
    if search:
        sql += " AND (chosen LIKE ? OR rejected LIKE ? OR prompt LIKE ?)"
        params += [f"%{search}%"] * 3
    sql += " ORDER BY id LIMIT ? OFFSET ?"
    params += [limit, offset]
    return [_pair(r) for r in store.query(sql, tuple(params))]


def get_pair(store: Any, pair_id: int) -> Pair:
    rows = store.query("SELECT * FROM preferences WHERE id = ?", (pair_id,))
    if not rows:
        raise PrefError(f"preference pair {pair_id}: no such pair (see `persona-studio prefs list`)")
    return _pair(rows[0])


def counts(store: Any, persona_id: str) -> dict[str, int]:
    """Pairs per source (every source listed, zeros included)."""
    out = dict.fromkeys(SOURCES, 0)
    for r in store.query("SELECT source, count(*) n FROM preferences WHERE persona_id = ? GROUP BY source",
                         (persona_id,)):
        out[r["source"]] = r["n"]
    return out


def delete_pairs(store: Any, pair_ids: Sequence[int]) -> int:
    """Delete the pairs (all or none: an unknown id refuses the whole request)."""
    with store.tx() as db:
        for pid in pair_ids:
            if db.execute("SELECT 1 FROM preferences WHERE id = ?", (pid,)).fetchone() is None:
                raise PrefError(f"preference pair {pid}: no such pair (nothing deleted)")
        for pid in pair_ids:
            db.execute("DELETE FROM preferences WHERE id = ?", (pid,))
    return len(pair_ids)


def edit_pair(store: Any, pair_id: int, *, chosen: str | None = None, rejected: str | None = None,
              pii: Any = None) -> Pair:
    """Change a pair's chosen and/or rejected text (redacted like everything stored)."""
    pair = get_pair(store, pair_id)
    new_c = pair.chosen if chosen is None else chosen
    new_r = pair.rejected if rejected is None else rejected
    for name, text in (("chosen", new_c), ("rejected", new_r)):
        if not text.strip():
            raise PrefError(f"preference pair {pair_id}: {name} is empty")
    if new_c.strip() == new_r.strip():
        raise PrefError(f"preference pair {pair_id}: chosen and rejected are the same text")
    redact = Redact(pii)
    found: dict[str, int] = {}
    c, r = redact.text(new_c, found), redact.text(new_r, found)
    if c is None or r is None:
        raise PrefError(f"preference pair {pair_id}: the text holds personal data set to 'drop' (make_dataset.pii)")
    meta = {**pair.meta, "edited": True}
    with store.tx() as db:
        db.execute(
            "UPDATE preferences SET chosen = ?, rejected = ?, meta = ?,"
            " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?",
            (c, r, _dumps(meta), pair_id),
        )
    return get_pair(store, pair_id)


def training_pairs(store: Any, persona_id: str, sources: Sequence[str] = SOURCES, pii: Any = None) -> list[Pair]:
    """The pairs a preference run uses: from `sources`, redacted by the current rules, none empty or
    with chosen == rejected. (The same preference expressed twice counts twice, as it would in a file.)"""
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise PrefError(f"train_pref_args.sources: unknown source {unknown[0]!r} (known: {', '.join(SOURCES)})")
    redact = Redact(pii)
    out = []
    for p in list_pairs(store, persona_id, limit=-1):
        if p.source not in sources:
            continue
        done = redact.pair(p.system, p.prompt, p.chosen, p.rejected)
        if done is None:
            continue
        p.system, p.prompt, p.chosen, p.rejected, _ = done
        if not p.chosen.strip() or not p.rejected.strip() or p.chosen.strip() == p.rejected.strip():
            continue
        out.append(p)
    return out
