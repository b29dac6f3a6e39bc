"""The imports a persona has had: list them, and undo one.

Undoing an import removes its messages and the samples made only from them, in ONE store
transaction. Samples carry no link to the messages they came from (make-dataset rebuilds them
from every import, and deduplicates across imports), so the undo deletes the import and then
re-runs make-dataset inside the same transaction: samples another import still makes keep
their row (status, edits, scores); samples only the removed import made are gone. A persona
that never had a dataset run has no samples to rebuild. The judge is not run by an undo.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persona_studio.errors import UserError
from persona_studio.workspace import Workspace


class ImportNotFound(UserError, LookupError):
    pass


def list_imports(ws: Workspace, persona_id: str | None = None) -> list[dict[str, Any]]:
    """Imports, newest first: id, persona, path, format, me, when, messages."""
    with ws.store() as store:
        rows = store.query(
            "SELECT i.id, i.persona_id, i.path, i.format, i.me, i.imported_at,"
            " (SELECT coalesce(sum(n), 0) FROM message_blocks b WHERE b.import_id = i.id) AS messages"
            " FROM imports i WHERE ?1 IS NULL OR i.persona_id = ?1 ORDER BY i.id DESC",
            (persona_id,),
        )
    return [{"id": r[0], "persona": r[1], "path": r[2], "format": r[3], "me": r[4], "imported_at": r[5],
             "messages": r[6]} for r in rows]


def persona_of_files(ws: Workspace, paths: list[Path]) -> str | None:
    """The persona whose folder (personas/<id>/…) holds all of `paths`, if there is one."""
    root = ws.personas_dir.resolve()
    found = set()
    for p in paths:
        try:
            rel = Path(p).expanduser().resolve().relative_to(root)
        except ValueError:
            return None
        found.add(rel.parts[0] if len(rel.parts) > 1 else "")
    pid = found.pop() if len(found) == 1 else ""
    return pid if pid and pid in ws.persona_ids() else None


def suggest_me(ws: Workspace, persona_id: str, speakers: list[str]) -> tuple[str, str] | None:
    """(speaker, why) to offer as the persona's "me" in a new export, or None.

    The speaker this persona's latest import used (people import several exports of the same
    account), else the one speaker named like the persona's card or id, ignoring case, spaces
    and punctuation ("Rosa Diaz" ~ rosa-diaz). Only an offer: the TUI shows it and a pick
    replaces it; headless `import` keeps asking for --me.
    """
    present = set(speakers)
    for imp in list_imports(ws, persona_id):
        if imp["me"] in present:
            return imp["me"], f"\"me\" of import {imp['id']}"
    keys = {_plain(persona_id)}
    with contextlib.suppress(Exception):  # a card that does not load is `info`'s news, not ours
        from persona_studio.persona.card import load_persona

        keys.add(_plain(load_persona(ws, persona_id).name))
    matches = [s for s in speakers if _plain(s) in keys - {""}]
    return (matches[0], f"named like persona {persona_id}") if len(matches) == 1 else None


def _plain(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch.isalnum())


class _Nested:
    """A Store-shaped view of a connection already inside a transaction: `tx()` is a savepoint."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("SAVEPOINT rebuild")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK TO rebuild")
            self.conn.execute("RELEASE rebuild")
            raise
        self.conn.execute("RELEASE rebuild")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        pass  # the outer transaction owns the connection


class _InTransaction(Workspace):
    """The workspace as make-dataset sees it during an undo: its store is the undo's
    transaction, and the judge is off (scoring would need the store the undo holds)."""

    def __init__(self, ws: Workspace, conn: sqlite3.Connection):
        md = ws.settings.make_dataset
        quiet = dataclasses.replace(md, judge=dataclasses.replace(md.judge, enable=False))
        super().__init__(ws.root, dataclasses.replace(ws.settings, make_dataset=quiet))
        self._conn = conn

    def store(self) -> _Nested:  # type: ignore[override]
        return _Nested(self._conn)


def undo_import(ws: Workspace, import_id: int) -> dict[str, Any]:
    """Remove import `import_id` and the samples only it made; return a summary."""
    from persona_studio.clean.pipeline import make_dataset

    store = ws.store()
    try:
        with store.tx() as db:
            row = db.execute("SELECT persona_id, path, format FROM imports WHERE id = ?", (import_id,)).fetchone()
            if row is None:
                known = [str(r[0]) for r in db.execute("SELECT id FROM imports ORDER BY id DESC LIMIT 5")]
                hint = f"recent: {', '.join(known)}" if known else "there are no imports"
                raise ImportNotFound(f"no import with id {import_id} ({hint}; see `persona-studio import --list`)")
            persona_id, path, fmt = row[0], row[1], row[2]

            def count_samples() -> int:
                return db.execute("SELECT count(*) FROM samples WHERE persona_id = ? AND source = 'import'",
                                  (persona_id,)).fetchone()[0]

            messages = db.execute("SELECT coalesce(sum(n), 0) FROM message_blocks WHERE import_id = ?",
                                  (import_id,)).fetchone()[0]
            samples_before = count_samples()
            had_run = db.execute("SELECT 1 FROM dataset_runs WHERE persona_id = ? LIMIT 1",
                                 (persona_id,)).fetchone() is not None
            db.execute("DELETE FROM blocked_hits WHERE import_id = ?", (import_id,))
            db.execute("DELETE FROM message_blocks WHERE import_id = ?", (import_id,))
            # Other engineers' per-import rows (preference pairs…) go with ON DELETE CASCADE.
            db.execute("DELETE FROM imports WHERE id = ?", (import_id,))
            rebuilt = None
            # (a persona whose card was deleted keeps its samples: nothing to rebuild them with)
            if had_run and samples_before and persona_id in ws.persona_ids():
                # force: review work on samples only this import made goes with them, as asked
                rebuilt = make_dataset(_InTransaction(ws, db), persona_id, force=True)
            samples_after = count_samples()
    finally:
        store.close()
    summary: dict[str, Any] = {
        "import_id": import_id, "persona": persona_id, "path": path, "format": fmt,
        "messages_removed": messages, "samples_removed": samples_before - samples_after,
        "samples_left": samples_after,
    }
    if rebuilt is not None:
        summary["dataset_run"] = rebuilt["run_id"]
    return summary


def describe(summary: dict[str, Any]) -> str:
    return (f"undid import {summary['import_id']} ({summary['path']}) of {summary['persona']}: "
            f"{summary['messages_removed']:,} messages and {summary['samples_removed']:,} samples removed, "
            f"{summary['samples_left']:,} samples left")
