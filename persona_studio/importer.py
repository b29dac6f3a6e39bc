"""Chat export files -> the store, for one persona.

Everything one `import` does happens in ONE store transaction, fed while the file streams:
a bad file, a wrong `--me` or an interrupt rolls all of it back, so the store is exactly as
before. Re-importing a file (same bytes, same persona) is a no-op: imports has
UNIQUE(persona_id, sha256). Raw text is stored; cleaning happens in make-dataset, so changing
cleaning settings never needs a re-import.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_studio.bulk import Background, paused_gc
from persona_studio.errors import UserError

if TYPE_CHECKING:  # ingest itself is imported lazily, where a file is read
    import numpy as np

    from persona_studio.store.blocks import Block

Progress = Callable[[int, int | None], None]


class PersonaNotFound(UserError, LookupError):
    pass


class SpeakerNotFound(UserError, LookupError):
    pass


class NothingImported(UserError, ValueError):
    """A file in which no record became a message: a failure, not an empty success."""


def nothing_reason(path: Path, stats: Any) -> str:
    """One line naming the first problem of a file that gave no messages."""
    if stats.bad_examples:
        more = f" (and {stats.bad - 1:,} more bad records)" if stats.bad > 1 else ""
        return f"no messages imported from {path}: first problem: {stats.bad_examples[0]}{more}"
    if stats.skipped_kinds:
        skipped = ", ".join(f"{k} {v:,}" for k, v in stats.skipped_kinds.items())
        return f"{path}: no messages imported: every record was skipped ({skipped})"
    return f"{path}: no messages imported: the file holds no messages"


def check_persona(ws: Any, persona_id: str) -> str:
    """`persona_id` if personas/<id>/persona.jsonc exists, else a one-line error with the closest ids."""
    known = ws.persona_ids()
    if persona_id in known:
        return persona_id
    close = difflib.get_close_matches(persona_id, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known) or 'none yet'}"
    start = "" if close else f"; start it with `persona-studio persona new {persona_id}` or import with --create"
    raise PersonaNotFound(f"unknown persona {persona_id!r} ({hint}){start}")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# Exports write names with no-break or narrow spaces and direction marks that nobody types.
_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2007": " ", "\u3000": " "})
_MARKS = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"


def fold_name(name: str) -> str:
    """A speaker name as compared with what the user typed for --me."""
    return " ".join(name.translate(_SPACES).strip(_MARKS).split()).casefold()


def closest_speakers(me: str, counts: Counter[str], n: int = 5) -> str:
    names = [s for s, _ in counts.most_common() if s]  # "": notices nobody wrote
    close = difflib.get_close_matches(me, names, n=n, cutoff=0.4)
    lowered = [s for s in names if me.casefold() in s.casefold() and s not in close]
    picks = (close + lowered)[:n] or names[:n]
    return ", ".join(f"{s} ({counts[s]})" for s in picks)


def import_files(
    ws: Any,
    persona_id: str,
    paths: Sequence[str | Path],
    me: str | None,
    fmt: str = "auto",
    progress: Progress | None = None,
    create: bool = False,
) -> dict[str, Any]:
    """Import every file in one transaction; return the summary (per file and totals).
    `create`: make the persona first if it does not exist (a card skeleton named after `me`),
    and remove it again if the import fails."""
    created = None
    if create and persona_id not in ws.persona_ids():
        from persona_studio.persona.skeleton import new_persona

        created = new_persona(ws, persona_id, me)
    try:
        summary = _import_files(ws, persona_id, paths, me, fmt, progress)
    except BaseException:
        if created is not None:
            import shutil

            shutil.rmtree(created.parent, ignore_errors=True)
        raise
    if created is not None:
        summary["created_persona"] = str(created)
    return summary


def _import_files(
    ws: Any, persona_id: str, paths: Sequence[str | Path], me: str | None, fmt: str, progress: Progress | None
) -> dict[str, Any]:
    from persona_studio.ingest.base import check_readable

    check_persona(ws, persona_id)
    files = []
    for p in paths:
        path = Path(p).expanduser()
        check_readable(path)
        try:
            files.append((path, file_sha256(path)))
        except OSError as exc:  # readable a moment ago: a flaky mount, a file replaced meanwhile
            raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    store = ws.store()
    try:
        results = []
        with paused_gc(), store.tx() as db:
            done = 0
            for path, sha in files:
                res = import_one(db, persona_id, path, sha, me, fmt, progress, done,
                                 pii=ws.settings.make_dataset.pii)
                done += res.get("read", 0)
                results.append(res)
    finally:
        store.close()
    total = Counter()
    for r in results:
        for k in ("read", "stored", "bad", "me_messages", "pairs"):
            total[k] += r.get(k, 0)
    return {
        "persona": persona_id,
        "files": results,
        "imported": sum(r["status"] == "imported" for r in results),
        "unchanged": sum(r["status"] == "unchanged" for r in results),
        **dict(total),
    }


def import_one(
    db: sqlite3.Connection,
    persona_id: str,
    path: Path,
    sha: str,
    me: str | None,
    fmt: str = "auto",
    progress: Progress | None = None,
    offset: int = 0,
    pii: Any = None,
) -> dict[str, Any]:
    """Stream one file into an open transaction `db`. A DPO/KTO dataset stores preference pairs
    (redacted by `pii`, make_dataset.pii) instead of messages."""
    row = db.execute(
        "SELECT id, format FROM imports WHERE persona_id = ? AND sha256 = ?", (persona_id, sha)
    ).fetchone()
    if row is not None:
        return {"path": str(path), "status": "unchanged", "import_id": row[0], "format": row[1]}
    from persona_studio.prefs import imports as pref_imports

    pref_fmt = pref_imports.preference_format(path, fmt)
    if pref_fmt is not None:
        return pref_imports.import_into(db, persona_id, path, sha, pref_fmt, pii)
    from persona_studio import ingest

    stats = ingest.ReadStats()
    import_id = db.execute(
        "INSERT INTO imports (persona_id, path, sha256, format, me) VALUES (?,?,?,?,?)",
        (persona_id, str(path), sha, fmt, me or ""),
    ).lastrowid
    assert import_id is not None
    feed = _Feed(me, progress, offset)
    # SQLite writes a block (GIL released) while pyarrow parses the next one: on two cores the
    # store costs little beyond the parse. The writer is the only user of `db` until `wait`.
    writer = Background()
    try:
        for block in ingest.read_blocks(path, fmt=fmt, stats=stats):
            writer.submit(_store, db, import_id, feed.block(block))
        writer.wait()
    finally:
        writer.close()
    feed.check(path)
    if feed.stored == 0:
        raise NothingImported(nothing_reason(path, stats))
    summary = {
        "path": str(path),
        "status": "imported",
        "import_id": import_id,
        "format": stats.format or fmt,
        "encoding": stats.encoding,
        "read": stats.read,
        "stored": feed.stored,
        "bad": stats.bad,
        "bad_examples": list(stats.bad_examples)[:5],
        "skipped_kinds": dict(stats.skipped_kinds),
        "kinds": dict(feed.kinds),
        "me": me or "(roles from the file)",
        "me_messages": feed.me_messages,
        "speakers": len(feed.speakers),
    }
    db.execute(
        "UPDATE imports SET format = ?, summary = ? WHERE id = ?",
        (summary["format"], json.dumps(summary, ensure_ascii=False), import_id),
    )
    return summary


def _store(db: sqlite3.Connection, import_id: int, block: Block) -> None:
    from persona_studio.store.blocks import INSERT, pack

    db.execute(INSERT, pack(import_id, block))


class _Feed:
    """Decides who is "me" in each Block and counts as the blocks stream past (no lists)."""

    def __init__(self, me: str | None, progress: Progress | None, offset: int):
        self.me = me
        self.me_fold = fold_name(me) if me else None
        self.progress = progress
        self.offset = offset
        self.speakers: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.stored = 0
        self.me_messages = 0
        self.needs_me = False

    def _is_me(self, b: Block) -> np.ndarray:
        """0/1 per message. Who is "me" depends on the speaker and speaker_id values only, so
        each distinct value is judged once in Python and the verdicts spread with `take`."""
        import numpy as np
        import pyarrow.compute as pc

        from persona_studio.store.blocks import codes

        batch = b.batch
        if "meta:role" in batch.schema.names and self.me is None:
            # Generic datasets know roles; without --me the source's assistant is the persona.
            roles = pc.fill_null(pc.equal(batch.column("meta:role"), "assistant"), False)
            return roles.to_numpy(zero_copy_only=False).astype(np.uint8)
        self.needs_me = self.needs_me or "meta:role" not in batch.schema.names
        if self.me is None:
            return np.zeros(len(b), np.uint8)
        me, fold = self.me, self.me_fold
        speaker, speakers = codes(batch.column("speaker"))
        speaker_id, ids = codes(batch.column("speaker_id"))
        by_speaker = np.array([s == me or fold_name(s) == fold for s in speakers], dtype=bool)
        by_id = np.array([i != "" and i == me for i in ids], dtype=bool)
        return (by_speaker[speaker] | by_id[speaker_id]).astype(np.uint8)

    def block(self, b: Block) -> Block:
        """Fill `b.is_me`; count speakers, kinds, messages. Returns `b`."""
        from persona_studio.store.blocks import value_counts

        is_me = self._is_me(b)
        b.is_me = is_me
        self.speakers.update(dict(value_counts(b.batch.column("speaker"), self.speakers)))
        self.kinds.update(dict(value_counts(b.batch.column("kind"), self.kinds)))
        self.me_messages += int(is_me.sum())
        self.stored += len(b)
        if self.progress is not None:
            self.progress(self.offset + self.stored, None)
        return b

    def check(self, path: Path) -> None:
        """After the stream: `--me` must name a speaker of this file (raises; the caller rolls back)."""
        if self.stored == 0:
            return
        if self.me is None and self.needs_me:
            raise SpeakerNotFound(
                f"{path}: --me is required for chat exports: who is the persona? speakers: "
                f"{closest_speakers('', self.speakers)}"
            )
        if self.me is not None and self.me_messages == 0:
            raise SpeakerNotFound(
                f"{path}: --me {self.me!r} is not a speaker in this file; closest: "
                f"{closest_speakers(self.me, self.speakers)} (see `persona-studio speakers {path}`)"
            )
