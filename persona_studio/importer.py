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
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_studio.clean.dedup import dumps
from persona_studio.errors import UserError

if TYPE_CHECKING:  # ingest itself is imported lazily, where a file is read
    from persona_studio.ingest import Row

Progress = Callable[[int, int | None], None]

INSERT_MESSAGE = (
    "INSERT INTO messages (import_id, seq, ts, chat, speaker, speaker_id, is_me, kind, text, meta)"
    " VALUES (?,?,?,?,?,?,?,?,?,?)"
)


class PersonaNotFound(UserError, LookupError):
    pass


class SpeakerNotFound(UserError, LookupError):
    pass


def check_persona(ws: Any, persona_id: str) -> str:
    """`persona_id` if personas/<id>/persona.jsonc exists, else a one-line error with the closest ids."""
    known = ws.persona_ids()
    if persona_id in known:
        return persona_id
    close = difflib.get_close_matches(persona_id, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known) or 'none yet'}"
    raise PersonaNotFound(f"unknown persona {persona_id!r} ({hint})")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def closest_speakers(me: str, counts: Counter[str], n: int = 5) -> str:
    names = [s for s, _ in counts.most_common()]
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
) -> dict[str, Any]:
    """Import every file in one transaction; return the summary (per file and totals)."""
    check_persona(ws, persona_id)
    files = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        files.append((path, file_sha256(path)))
    store = ws.store()
    # Bulk work: a 64 MiB page cache keeps the index B-trees in memory (default is 2 MiB).
    store.conn.execute("PRAGMA cache_size = -65536")
    try:
        results = []
        with store.tx() as db:
            rebuild = _defer_index(db, persona_id, files)
            done = 0
            for path, sha in files:
                res = import_one(db, persona_id, path, sha, me, fmt, progress, done)
                done += res.get("read", 0)
                results.append(res)
            if rebuild is not None:
                db.execute(rebuild)
    finally:
        store.close()
    total = Counter()
    for r in results:
        for k in ("read", "stored", "bad", "me_messages"):
            total[k] += r.get(k, 0)
    return {
        "persona": persona_id,
        "files": results,
        "imported": sum(r["status"] == "imported" for r in results),
        "unchanged": sum(r["status"] == "unchanged" for r in results),
        **dict(total),
    }


# Rough bytes per message of a chat export (the benchmark's WeChat CSV has ~85): only used to
# guess whether an import is big next to what the store already holds.
_BYTES_PER_MESSAGE = 100


def _defer_index(db: sqlite3.Connection, persona_id: str, files: list[tuple[Path, str]]) -> str | None:
    """Drop the messages index when the new rows outnumber the stored ones and return the SQL
    that rebuilds it (run it before the transaction ends); None when keeping it is cheaper.

    Maintaining the (import_id, seq) index costs ~0.8 µs per inserted row; building it once at
    the end costs ~0.3 µs per row of the whole table. So it pays off when the new rows are
    many next to the stored ones — the first import of a big export, the case that takes
    long. DDL is transactional in SQLite: a failed import rolls the drop back too, and other
    connections keep seeing the index until the commit."""
    new_bytes = sum(
        path.stat().st_size for path, sha in files
        if db.execute("SELECT 1 FROM imports WHERE persona_id = ? AND sha256 = ?", (persona_id, sha)).fetchone()
        is None
    )
    # No minimum size: rebuilding a small table's index costs next to nothing, and taking this
    # path on every first import keeps it exercised by the ordinary tests.
    new_rows = new_bytes // _BYTES_PER_MESSAGE
    # max(id) is an O(log n) upper bound of the stored rows (count(*) would scan them all).
    stored = db.execute("SELECT max(id) FROM messages").fetchone()[0] or 0
    if new_bytes == 0 or new_rows < stored:
        return None
    row = db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'messages_import'"
    ).fetchone()
    if row is None or row[0] is None:
        return None
    db.execute("DROP INDEX messages_import")
    return row[0]


def import_one(
    db: sqlite3.Connection,
    persona_id: str,
    path: Path,
    sha: str,
    me: str | None,
    fmt: str = "auto",
    progress: Progress | None = None,
    offset: int = 0,
) -> dict[str, Any]:
    """Stream one file into an open transaction `db`."""
    row = db.execute(
        "SELECT id, format FROM imports WHERE persona_id = ? AND sha256 = ?", (persona_id, sha)
    ).fetchone()
    if row is not None:
        return {"path": str(path), "status": "unchanged", "import_id": row[0], "format": row[1]}
    from persona_studio import ingest

    stats = ingest.ReadStats()
    import_id = db.execute(
        "INSERT INTO imports (persona_id, path, sha256, format, me) VALUES (?,?,?,?,?)",
        (persona_id, str(path), sha, fmt, me or ""),
    ).lastrowid
    assert import_id is not None
    feed = _Feed(import_id, me, progress, offset)
    rows = ingest.read_rows(path, fmt=fmt, stats=stats)
    if rows is not None:  # a format with a bulk reader: plain tuples, no Message objects
        db.executemany(INSERT_MESSAGE, feed.bulk_rows(rows))
    else:
        db.executemany(INSERT_MESSAGE, feed.rows(ingest.read(path, fmt=stats.format, stats=stats)))
    feed.check(path)
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


class _Feed:
    """Turns Messages into rows for executemany, counting as it goes (one pass, no lists)."""

    def __init__(self, import_id: int, me: str | None, progress: Progress | None, offset: int):
        self.import_id = import_id
        self.me = me
        self.me_fold = me.casefold() if me else None
        self.progress = progress
        self.offset = offset
        self.speakers: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.stored = 0
        self.me_messages = 0
        self.needs_me = False
        self._is_me: dict[tuple[str, str], bool] = {}

    def _match(self, speaker: str, speaker_id: str) -> bool:
        key = (speaker, speaker_id)
        hit = self._is_me.get(key)
        if hit is None:
            me = self.me
            hit = me is not None and (
                speaker == me or (speaker_id != "" and speaker_id == me) or speaker.casefold() == self.me_fold
            )
            self._is_me[key] = hit
        return hit

    def rows(self, messages: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
        speakers, kinds = self.speakers, self.kinds
        import_id, progress, offset = self.import_id, self.progress, self.offset
        known = self._is_me  # (speaker, speaker_id) -> is the persona; filled by _match
        seq = 0
        for m in messages:
            seq += 1
            speakers[m.speaker] += 1
            kinds[m.kind] += 1
            meta = m.meta
            if m.role is not None:
                # Generic datasets know roles and sample boundaries; keep both for make-dataset.
                is_me = self._match(m.speaker, m.speaker_id) if self.me else m.role == "assistant"
                meta = {**meta, "role": m.role, "conv": m.conv}
            else:
                is_me = known.get((m.speaker, m.speaker_id))
                if is_me is None:
                    is_me = self._match(m.speaker, m.speaker_id)
                self.needs_me = True
            if is_me:
                self.me_messages += 1
            if progress is not None and not seq & 0x3FFF:
                progress(offset + seq, None)
            yield (
                import_id,
                seq,
                m.ts,
                m.chat,
                m.speaker,
                m.speaker_id or m.speaker,
                1 if is_me else 0,
                m.kind,
                m.text,
                dumps(meta) if meta else "{}",
            )
        self.stored = seq
        if progress is not None:
            progress(offset + seq, None)

    def bulk_rows(self, rows: Iterable[Row]) -> Iterator[tuple[Any, ...]]:
        """Like `rows`, for a bulk reader's tuples (chat exports: no roles, meta already JSON): the
        same rows and counts as the equivalent Messages give, with less work per row."""
        speakers, kinds = self.speakers, self.kinds
        import_id, progress, offset = self.import_id, self.progress, self.offset
        known = self._is_me
        match = self._match
        seq = me_messages = 0
        for ts, chat, speaker, speaker_id, kind, text, meta in rows:
            seq += 1
            speakers[speaker] += 1
            kinds[kind] += 1
            is_me = known.get((speaker, speaker_id))
            if is_me is None:
                is_me = match(speaker, speaker_id)
            if is_me:
                me_messages += 1
            if progress is not None and not seq & 0x3FFF:
                progress(offset + seq, None)
            yield (import_id, seq, ts, chat, speaker, speaker_id or speaker, 1 if is_me else 0, kind, text, meta)
        self.stored = seq
        self.me_messages = me_messages
        self.needs_me = seq > 0
        if progress is not None:
            progress(offset + seq, None)

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
