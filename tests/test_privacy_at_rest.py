"""Issue 10 point 3: the store is the owner's only (`.studio/` 0700; studio.db and its -wal/-shm
0600), older workspaces are tightened on open, and blocked-word hits keep the redacted text."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from persona_studio.cli import main
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import add_persona, rows, wechat_csv


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_store_files_are_private_and_hits_keep_redacted_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = os.umask(0o022)  # the usual umask: files would be 0644 and directories 0755 by default
    try:
        root = tmp_path / "ws"
        assert main(["init", str(root)]) == 0
        ws = Workspace.open(root)
        ws.settings_path.write_text('{make_dataset: {blocked_words: ["secret"]}}', encoding="utf-8")
        add_persona(ws, "alice")
        chat = [("文本", 0, "bob", "the secret is my card 4111 1111 1111 1111, call +44 20 7946 0958",
                 "2024-10-04 11:00:00"),
                ("文本", 1, "bob", "ok", "2024-10-04 11:01:00")]
        export = wechat_csv(tmp_path / "c.csv", chat)
        assert main(["import", str(export), "--persona", "alice", "--me", "me", "-w", str(root)]) == 0
        assert main(["make-dataset", "--persona", "alice", "-w", str(root)]) == 0
        state = root / ".studio"
        assert mode(state) == 0o700
        db_files = [p for p in state.iterdir() if p.name.startswith("studio.db")]
        assert {p.name for p in db_files} >= {"studio.db"}
        for p in db_files:
            assert mode(p) == 0o600, p.name
        hits = rows(ws, "SELECT word, text FROM blocked_hits")
        assert hits == [{"word": "secret", "text": "the secret is my card <BANK_CARD>, call <PHONE>"}]
        # WAL files appear while a connection is open: the same mode as the database
        store = ws.store()
        try:
            with store.tx() as db:
                db.execute("UPDATE samples SET status = status")
            for suffix in ("-wal", "-shm"):
                assert mode(state / f"studio.db{suffix}") == 0o600
        finally:
            store.close()
    finally:
        os.umask(old)


def test_an_older_workspace_is_tightened_on_open(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ws"
    assert main(["init", str(root)]) == 0
    Workspace.open(root).store().close()
    state = root / ".studio"
    os.chmod(state, 0o755)
    os.chmod(state / "studio.db", 0o644)
    assert main(["info", "-w", str(root)]) == 0
    assert mode(state) == 0o700 and mode(state / "studio.db") == 0o600


def test_hits_stored_raw_by_an_older_version_are_redacted_on_upgrade(tmp_path: Path) -> None:
    from persona_studio.store import SCHEMA_VERSION, Store
    from persona_studio.store.schema import MIGRATIONS

    v6 = next(i for i, m in enumerate(MIGRATIONS) if getattr(m, "__name__", "") == "_v6_redact_blocked_hits")
    db = tmp_path / "studio.db"
    with Store.open(db) as store, store.tx() as conn:
        conn.execute("INSERT INTO blocked_hits (persona_id, word, text) VALUES ('a', 'secret', ?)",
                     ("the secret: 0044 20 7946 0958, x@y.com",))
        conn.execute("INSERT INTO blocked_hits (persona_id, word, text) VALUES ('a', 'secret', 'secret plans')")
        conn.execute(f"PRAGMA user_version = {v6}")  # as the version before it left the rows
    with Store.open(db) as store:
        assert store.version == SCHEMA_VERSION
        assert [r[0] for r in store.query("SELECT text FROM blocked_hits ORDER BY id")] == [
            "the secret: <PHONE>, <EMAIL>", "secret plans"]
