"""The SQLite store: one connection helper, WAL, versioned schema, transactional writes."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from persona_studio.errors import UserError
from persona_studio.store.schema import MIGRATIONS

SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(UserError, RuntimeError):
    """A one-line, user-facing error about the database."""


class Store:
    """Owns one sqlite3 connection. Use `with store.tx() as db:` for every write."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path, *, migrate: bool = True) -> Store:
        _private(path)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves so a transaction spans
            # exactly what `tx()` wraps, DDL included.
            conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            # Check the version before anything that writes (WAL switch, migrations), so a
            # database from a newer persona-studio is refused untouched.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                conn.close()
                raise StoreError(
                    f"{path}: database schema v{version} is newer than this persona-studio"
                    f" (v{SCHEMA_VERSION}); upgrade persona-studio"
                )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a persona-studio database ({exc})") from None
        store = cls(conn, path)
        if migrate and version < SCHEMA_VERSION:
            store._migrate(version)
        return store

    def _migrate(self, version: int) -> None:
        for n in range(version, SCHEMA_VERSION):
            step = MIGRATIONS[n]
            with self.tx() as db:
                if callable(step):
                    step(db)
                else:
                    for stmt in _statements(step):
                        db.execute(stmt)
                db.execute(f"PRAGMA user_version = {n + 1}")

    @property
    def version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all of it lands, or none of it does."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _private(path: Path) -> None:
    """The database holds people's messages: its directory is the owner's only (0700, when it
    is a workspace's `.studio/` or is made here) and the file 0600 before SQLite first opens it.
    SQLite gives its -wal/-shm files the database file's mode; older ones are tightened too."""
    import os

    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(parent, 0o700)  # mkdir's mode passes through the umask
    elif parent.name == ".studio":
        os.chmod(parent, 0o700)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the database ({exc.strerror})") from None
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists() and p.stat().st_mode & 0o077:
            os.chmod(p, 0o600)


def _statements(script: str) -> list[str]:
    # sqlite3.executescript would COMMIT first; split so migrations stay inside our transaction.
    out, buf = [], []
    for line in script.splitlines():
        buf.append(line)
        if sqlite3.complete_statement("\n".join(buf)):
            stmt = "\n".join(buf).strip()
            if stmt.strip(";").strip():
                out.append(stmt)
            buf = []
    return out
