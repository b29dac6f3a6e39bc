from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from persona_studio.store import SCHEMA_VERSION, Store, StoreError


def test_new_store_is_wal_and_migrated(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        assert store.version == SCHEMA_VERSION >= 1
        assert store.query("PRAGMA journal_mode")[0][0] == "wal"
        tables = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"imports", "message_blocks", "samples", "scores", "edits", "blocked_hits", "chats", "chat_messages",
            "preferences", "dataset_runs"} <= tables


def test_reopen_keeps_data_and_does_not_remigrate(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store, store.tx() as db:
        db.execute("INSERT INTO samples(persona_id, hash, turns, n_turns) VALUES ('a', 'h', '[]', 0)")
    with Store.open(tmp_path / "s.db") as store:
        assert store.query("SELECT count(*) FROM samples")[0][0] == 1


def test_failed_transaction_leaves_previous_state(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    with store.tx() as db:
        db.execute("INSERT INTO samples(persona_id, hash, turns, n_turns) VALUES ('a', 'h1', '[]', 0)")
    with pytest.raises(RuntimeError), store.tx() as db:
        db.execute("INSERT INTO samples(persona_id, hash, turns, n_turns) VALUES ('a', 'h2', '[]', 0)")
        raise RuntimeError("crash mid-write")
    assert [r["hash"] for r in store.query("SELECT hash FROM samples")] == ["h1"]


def test_killed_process_mid_transaction_leaves_previous_state(tmp_path: Path) -> None:
    db_path = tmp_path / "s.db"
    with Store.open(db_path) as store, store.tx() as db:
        db.execute("INSERT INTO samples(persona_id, hash, turns, n_turns) VALUES ('a', 'before', '[]', 0)")
    # A child writes thousands of rows in one transaction and dies (SIGKILL-like os._exit) before COMMIT.
    code = f"""
import os
from pathlib import Path
from persona_studio.store import Store
store = Store.open(Path({str(db_path)!r}))
store.conn.execute("BEGIN IMMEDIATE")
for i in range(5000):
    store.conn.execute("INSERT INTO samples(persona_id, hash, turns, n_turns) VALUES ('a', ?, '[]', 0)", (f"x{{i}}",))
os._exit(9)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    with Store.open(db_path) as store:
        assert [r["hash"] for r in store.query("SELECT hash FROM samples")] == ["before"]


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=rf"schema v{SCHEMA_VERSION + 1} is newer") as err:
        Store.open(path)
    assert "\n" not in str(err.value)
    assert path.read_bytes() == before
    assert not (tmp_path / "s.db-wal").exists()


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a persona-studio database"):
        Store.open(path)
