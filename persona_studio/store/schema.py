"""Schema migrations, applied in order; `PRAGMA user_version` records how many ran.

Append new migrations at the end; never edit one that has shipped. A migration is an SQL
script, or a function for one that must move data in Python; either runs inside the
transaction that bumps `user_version`.
JSON columns hold lists/objects encoded with json.dumps(ensure_ascii=False).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable


def _v2_message_blocks(db: sqlite3.Connection) -> None:
    """messages (a row per message) -> message_blocks (see store/blocks.py for why)."""
    import numpy as np

    from persona_studio.store import _v2blocks as v2
    from persona_studio.store.blocks import meta_columns

    db.execute(v2.DDL)
    cur = db.cursor()
    cur.row_factory = None
    import_ids = [r[0] for r in cur.execute("SELECT DISTINCT import_id FROM messages ORDER BY import_id")]
    for import_id in import_ids:
        rows = cur.execute(
            "SELECT seq, ts, chat, speaker, speaker_id, is_me, kind, text, meta FROM messages"
            " WHERE import_id = ? ORDER BY seq", (import_id,)).fetchall()
        for start in range(0, len(rows), 4096):
            part = rows[start:start + 4096]
            seq, ts, chat, speaker, speaker_id, is_me, kind, text, meta = zip(*part, strict=True)
            ts_col = np.array([np.nan if t is None else t for t in ts], dtype="<f8")
            db.execute(v2.INSERT, v2.pack(import_id, seq[0], ts_col, bytes(is_me),
                                          (chat, speaker, speaker_id, kind, text),
                                          meta_columns([json.loads(m) for m in meta])))
    db.execute("DROP TABLE messages")
    # Hits name the message by its place in its import; message_id pointed into `messages`.
    db.execute("ALTER TABLE blocked_hits ADD COLUMN import_id INTEGER")
    db.execute("ALTER TABLE blocked_hits ADD COLUMN seq INTEGER")


def _v3_arrow_blocks(db: sqlite3.Connection) -> None:
    """message_blocks: a value per column (v2) -> one Arrow IPC stream per block (store/blocks.py)."""
    from persona_studio.store import _v2blocks as v2
    from persona_studio.store.blocks import INSERT, Block, pack

    db.execute("ALTER TABLE message_blocks RENAME TO message_blocks_v2")
    db.execute("""
        CREATE TABLE message_blocks (
            id          INTEGER PRIMARY KEY,
            import_id   INTEGER NOT NULL REFERENCES imports(id) ON DELETE CASCADE,
            first_seq   INTEGER NOT NULL,
            n           INTEGER NOT NULL,
            data        BLOB NOT NULL,
            UNIQUE (import_id, first_seq)
        )
    """)
    cur = db.cursor()
    cur.row_factory = None
    for row in cur.execute(v2.SELECT.format(table="message_blocks_v2")):
        fields = v2.unpack(row)
        import_id = fields.pop("import_id")
        db.execute(INSERT, pack(import_id, Block(**fields)))
    db.execute("DROP TABLE message_blocks_v2")


def _v4_preference_pairs(db: sqlite3.Connection) -> None:
    """preferences: chat edits only -> pairs from every source, with their context (see prefs/store.py).

    Rebuilt under the same name. An old chat reply edited twice has two rows; it becomes one pair:
    the model's original reply (the first row's rejected) against the latest edit."""
    db.execute("ALTER TABLE preferences RENAME TO preferences_v1")
    db.execute("""
        CREATE TABLE preferences (
            id          INTEGER PRIMARY KEY,
            persona_id  TEXT NOT NULL,
            source      TEXT NOT NULL
                        CHECK (source IN ('chat_edit', 'swipe', 'review_edit', 'import_dpo', 'import_kto')),
            system      TEXT NOT NULL DEFAULT '',
            prompt      TEXT NOT NULL,
            chosen      TEXT NOT NULL,
            rejected    TEXT NOT NULL,
            chat_message_id     INTEGER REFERENCES chat_messages(id) ON DELETE SET NULL,
            rejected_message_id INTEGER REFERENCES chat_messages(id) ON DELETE SET NULL,
            sample_id   INTEGER REFERENCES samples(id) ON DELETE SET NULL,
            turn        INTEGER,
            import_id   INTEGER REFERENCES imports(id) ON DELETE CASCADE,
            meta        TEXT NOT NULL DEFAULT '{}',
            created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
            updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
        )
    """)
    db.execute("CREATE INDEX preferences_persona ON preferences(persona_id, source)")
    # One pair per edited reply, one per (kept swipe, passed-over swipe), one per edited sample turn.
    db.execute("CREATE UNIQUE INDEX preferences_chat_edit ON preferences(chat_message_id)"
               " WHERE source = 'chat_edit'")
    db.execute("CREATE UNIQUE INDEX preferences_swipe ON preferences(chat_message_id, rejected_message_id)"
               " WHERE source = 'swipe'")
    db.execute("CREATE UNIQUE INDEX preferences_review ON preferences(sample_id, turn) WHERE source = 'review_edit'")
    db.execute("""
        INSERT INTO preferences (persona_id, source, prompt, chosen, rejected, chat_message_id, created_at)
        SELECT persona_id, 'chat_edit', prompt,
               (SELECT chosen FROM preferences_v1 b WHERE b.chat_message_id IS a.chat_message_id
                ORDER BY b.id DESC LIMIT 1),
               rejected,
               (SELECT id FROM chat_messages WHERE id = a.chat_message_id), created_at
        FROM preferences_v1 a
        WHERE a.id = (SELECT min(id) FROM preferences_v1 c WHERE c.chat_message_id IS a.chat_message_id)
           OR a.chat_message_id IS NULL
        ORDER BY a.id
    """)
    db.execute("DROP TABLE preferences_v1")


def _v6_redact_blocked_hits(db: sqlite3.Connection) -> None:
    """blocked_hits kept the raw message; make-dataset now keeps it with its personal data
    redacted (clean/checks.py). Older rows get the default rules (a workspace's own settings
    are not known here); the next make-dataset rewrites them by its settings anyway."""
    from persona_studio.clean.pii import Redactor
    from persona_studio.settings import PiiArgs

    redactor = Redactor(PiiArgs())
    rows = db.execute("SELECT id, text FROM blocked_hits").fetchall()
    changed = [(new, i) for i, text in rows if (new := redactor.redact(text)) != text]
    db.executemany("UPDATE blocked_hits SET text = ? WHERE id = ?", changed)


MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    # 1: the whole pipeline, import -> samples -> review -> chat
    """
    CREATE TABLE imports (
        id          INTEGER PRIMARY KEY,
        persona_id  TEXT NOT NULL,
        path        TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        format      TEXT NOT NULL,
        me          TEXT NOT NULL,
        imported_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        summary     TEXT NOT NULL DEFAULT '{}',
        UNIQUE (persona_id, sha256)
    );
    CREATE TABLE messages (
        id         INTEGER PRIMARY KEY,
        import_id  INTEGER NOT NULL REFERENCES imports(id) ON DELETE CASCADE,
        seq        INTEGER NOT NULL,
        ts         REAL,
        chat       TEXT NOT NULL DEFAULT '',
        speaker    TEXT NOT NULL,
        speaker_id TEXT NOT NULL DEFAULT '',
        is_me      INTEGER NOT NULL,
        kind       TEXT NOT NULL DEFAULT 'text',
        text       TEXT NOT NULL,
        meta       TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX messages_import ON messages(import_id, seq);
    CREATE TABLE dataset_runs (
        id          INTEGER PRIMARY KEY,
        persona_id  TEXT NOT NULL,
        started_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        settings    TEXT NOT NULL DEFAULT '{}',
        summary     TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE samples (
        id          INTEGER PRIMARY KEY,
        persona_id  TEXT NOT NULL,
        run_id      INTEGER REFERENCES dataset_runs(id) ON DELETE SET NULL,
        hash        TEXT NOT NULL,
        system      TEXT NOT NULL DEFAULT '',
        turns       TEXT NOT NULL,
        n_turns     INTEGER NOT NULL,
        n_tokens    INTEGER,
        source      TEXT NOT NULL DEFAULT 'import',
        status      TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'accepted', 'rejected')),
        meta        TEXT NOT NULL DEFAULT '{}',
        created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        UNIQUE (persona_id, hash)
    );
    CREATE INDEX samples_persona ON samples(persona_id, status);
    CREATE TABLE scores (
        sample_id  INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        judge      TEXT NOT NULL,
        score      REAL NOT NULL,
        reason     TEXT NOT NULL DEFAULT '',
        scored_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        PRIMARY KEY (sample_id, judge)
    );
    CREATE TABLE blocked_hits (
        id         INTEGER PRIMARY KEY,
        persona_id TEXT NOT NULL,
        run_id     INTEGER REFERENCES dataset_runs(id) ON DELETE CASCADE,
        word       TEXT NOT NULL,
        message_id INTEGER,
        text       TEXT NOT NULL,
        sample_hash TEXT
    );
    CREATE INDEX blocked_hits_persona ON blocked_hits(persona_id, word);
    -- every review action, so any of them can be undone in order
    CREATE TABLE edits (
        id         INTEGER PRIMARY KEY,
        sample_id  INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        action     TEXT NOT NULL CHECK (action IN ('edit', 'accept', 'reject', 'reset')),
        before     TEXT NOT NULL,
        after      TEXT NOT NULL,
        at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        undone     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX edits_sample ON edits(sample_id, id);
    CREATE TABLE chats (
        id         INTEGER PRIMARY KEY,
        title      TEXT NOT NULL DEFAULT '',
        kind       TEXT NOT NULL DEFAULT 'chat' CHECK (kind IN ('chat', 'party')),
        personas   TEXT NOT NULL,
        settings   TEXT NOT NULL DEFAULT '{}',
        head_id    INTEGER,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    -- a message tree: swipes are siblings, branches are subtrees; head_id marks the shown path
    CREATE TABLE chat_messages (
        id         INTEGER PRIMARY KEY,
        chat_id    INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        parent_id  INTEGER REFERENCES chat_messages(id) ON DELETE CASCADE,
        role       TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        speaker    TEXT NOT NULL,
        content    TEXT NOT NULL,
        adapter    TEXT NOT NULL DEFAULT '',
        n_tokens   INTEGER,
        meta       TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE INDEX chat_messages_parent ON chat_messages(chat_id, parent_id);
    -- (original, edited) reply pairs for preference training
    CREATE TABLE preferences (
        id         INTEGER PRIMARY KEY,
        persona_id TEXT NOT NULL,
        prompt     TEXT NOT NULL,
        rejected   TEXT NOT NULL,
        chosen     TEXT NOT NULL,
        chat_message_id INTEGER,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    """,
    # 2: raw messages stored in blocks
    _v2_message_blocks,
    # 3: a block is one Arrow record batch
    _v3_arrow_blocks,
    # 4: preference pairs from chat edits, swipes, review edits and imported DPO/KTO datasets
    _v4_preference_pairs,
    # 5: persona fidelity eval runs (eval/run.py); scores are written only when a run completes
    """
    CREATE TABLE eval_runs (
        id          INTEGER PRIMARY KEY,
        persona_id  TEXT NOT NULL,
        state       TEXT NOT NULL DEFAULT 'running'
                    CHECK (state IN ('running', 'done', 'failed', 'cancelled')),
        adapters    TEXT NOT NULL DEFAULT '[]',
        settings    TEXT NOT NULL DEFAULT '{}',
        error       TEXT,
        report      TEXT NOT NULL DEFAULT '{}',
        started_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        finished_at TEXT
    );
    CREATE INDEX eval_runs_persona ON eval_runs(persona_id, id);
    CREATE TABLE eval_scores (
        run_id      INTEGER NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
        adapter     TEXT NOT NULL,
        metric      TEXT NOT NULL,
        value       REAL,
        PRIMARY KEY (run_id, adapter, metric)
    );
    """,
    # 6: blocked-word hits keep the message with its personal data redacted
    _v6_redact_blocked_hits,
]
