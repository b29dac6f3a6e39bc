"""Schema migrations, applied in order; `PRAGMA user_version` records how many ran.

Append new migrations at the end; never edit one that has shipped.
JSON columns hold lists/objects encoded with json.dumps(ensure_ascii=False).
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
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
]
