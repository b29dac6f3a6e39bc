"""The bulk-import path drops and rebuilds the messages index inside the import's transaction:
a failed import must leave the index (and everything else) exactly as before."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from persona_studio.errors import UserError
from persona_studio.importer import import_files
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import CHAT, add_persona, wechat_csv


def indexes(ws: Workspace) -> set[str]:
    conn = sqlite3.connect(ws.db_path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    finally:
        conn.close()


def test_failed_bulk_import_keeps_the_index_and_the_rows(workspace: Workspace, tmp_path: Path) -> None:
    add_persona(workspace, "alice")
    good = wechat_csv(tmp_path / "good.csv", CHAT)
    import_files(workspace, "alice", [good], me="me")
    assert "messages_import" in indexes(workspace)
    with workspace.store() as store:
        before = store.query("SELECT count(*) FROM messages")[0][0]
    # a much bigger file (so the index is dropped for the bulk path) that turns out to be broken at the end
    rows = CHAT * 200
    big = wechat_csv(tmp_path / "big.csv", rows)
    with big.open("a", encoding="utf-8") as fh:
        fh.write('999,1,文本,1,bob,,"never closed quote,,2024-10-04 12:00:00\n')
    with pytest.raises(UserError):
        import_files(workspace, "alice", [big], me="me")
    assert "messages_import" in indexes(workspace)
    with workspace.store() as store:
        assert store.query("SELECT count(*) FROM messages")[0][0] == before
        assert store.query("PRAGMA integrity_check")[0][0] == "ok"
        plan = " ".join(r[3] for r in store.query("EXPLAIN QUERY PLAN SELECT * FROM messages WHERE import_id = 1"))
    assert "messages_import" in plan


def test_successful_bulk_import_rebuilds_the_index(workspace: Workspace, tmp_path: Path) -> None:
    add_persona(workspace, "alice")
    import_files(workspace, "alice", [wechat_csv(tmp_path / "big.csv", CHAT * 200)], me="me")
    assert "messages_import" in indexes(workspace)
