"""A new store gets big pages (faster bulk import and make-dataset); an existing database keeps
the page size it was made with and still opens and migrates."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from persona_studio.store import PAGE_SIZE, SCHEMA_VERSION, Store


def test_new_store_uses_big_pages(tmp_path: Path) -> None:
    with Store.open(tmp_path / "new.db") as store:
        assert store.conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_existing_database_keeps_its_page_size(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("CREATE TABLE keep_me (x)")
    conn.execute("INSERT INTO keep_me VALUES (1)")
    conn.commit()
    conn.close()
    with Store.open(path) as store:
        assert store.conn.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert store.version == SCHEMA_VERSION
        assert store.query("SELECT x FROM keep_me")[0][0] == 1
