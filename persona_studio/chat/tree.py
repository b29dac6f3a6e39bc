"""Chat sessions as a message tree in the store (tables chats, chat_messages, preferences).

Every message points at its parent. Regenerating a reply adds a *sibling* (a swipe), so all
alternatives stay; writing after an older message starts a *branch*. `chats.head_id` marks
the last message of the path the user sees: the conversation is the chain from the root
down to the head. Every change is one store transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from persona_studio.errors import UserError
from persona_studio.store import Store


class ChatError(UserError, LookupError):
    """A one-line error about a chat or a message id."""


@dataclass
class Chat:
    id: int
    title: str
    kind: str
    personas: list[str]
    settings: dict
    head_id: int | None
    created_at: str


@dataclass
class Msg:
    id: int
    chat_id: int
    parent_id: int | None
    role: str
    speaker: str
    content: str
    adapter: str = ""
    n_tokens: int | None = None
    meta: dict = field(default_factory=dict)
    created_at: str = ""


def _chat(row: Any) -> Chat:
    return Chat(
        row["id"], row["title"], row["kind"], json.loads(row["personas"]), json.loads(row["settings"]),
        row["head_id"], row["created_at"],
    )


def _msg(row: Any) -> Msg:
    return Msg(
        row["id"], row["chat_id"], row["parent_id"], row["role"], row["speaker"], row["content"],
        row["adapter"], row["n_tokens"], json.loads(row["meta"]), row["created_at"],
    )


def _dumps(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


class ChatTree:
    def __init__(self, store: Store, pii: Any = None):
        self.store = store
        # make_dataset.pii of the workspace: preference pairs recorded here are redacted by it
        # (None = the default rules; a Conversation sets its workspace's).
        self.pii = pii

    # -- chats -------------------------------------------------------------------------------
    def create_chat(
        self, personas: list[str], *, kind: str = "chat", title: str = "", settings: dict | None = None
    ) -> Chat:
        if kind not in ("chat", "party"):
            raise ChatError(f"chat kind {kind!r}: expected 'chat' or 'party'")
        with self.store.tx() as db:
            cur = db.execute(
                "INSERT INTO chats (title, kind, personas, settings) VALUES (?, ?, ?, ?)",
                (title, kind, _dumps(personas), _dumps(settings or {})),
            )
            chat_id = int(cur.lastrowid or 0)
        return self.chat(chat_id)

    def chat(self, chat_id: int) -> Chat:
        rows = self.store.query("SELECT * FROM chats WHERE id = ?", (chat_id,))
        if not rows:
            raise ChatError(f"chat {chat_id}: no such chat")
        return _chat(rows[0])

    def chats(self, kind: str | None = None) -> list[Chat]:
        if kind is None:
            return [_chat(r) for r in self.store.query("SELECT * FROM chats ORDER BY id")]
        return [_chat(r) for r in self.store.query("SELECT * FROM chats WHERE kind = ? ORDER BY id", (kind,))]

    def delete_chat(self, chat_id: int) -> None:
        self.chat(chat_id)
        with self.store.tx() as db:
            db.execute("DELETE FROM chats WHERE id = ?", (chat_id,))

    # -- reading -----------------------------------------------------------------------------
    def message(self, msg_id: int) -> Msg:
        rows = self.store.query("SELECT * FROM chat_messages WHERE id = ?", (msg_id,))
        if not rows:
            raise ChatError(f"message {msg_id}: no such message")
        return _msg(rows[0])

    def path(self, chat_id: int, head_id: int | None = None) -> list[Msg]:
        """Root → head (the chat's head unless given): the conversation as shown."""
        head = head_id if head_id is not None else self.chat(chat_id).head_id
        if head is None:
            return []
        rows = self.store.query(
            """WITH RECURSIVE up(id, depth) AS (
                   SELECT id, 0 FROM chat_messages WHERE id = ? AND chat_id = ?
                   UNION ALL
                   SELECT m.parent_id, up.depth + 1 FROM chat_messages m JOIN up ON m.id = up.id
                   WHERE m.parent_id IS NOT NULL)
               SELECT m.* FROM up JOIN chat_messages m ON m.id = up.id ORDER BY up.depth DESC""",
            (head, chat_id),
        )
        return [_msg(r) for r in rows]

    def children(self, chat_id: int, parent_id: int | None) -> list[Msg]:
        if parent_id is None:
            rows = self.store.query(
                "SELECT * FROM chat_messages WHERE chat_id = ? AND parent_id IS NULL ORDER BY id", (chat_id,)
            )
        else:
            rows = self.store.query(
                "SELECT * FROM chat_messages WHERE chat_id = ? AND parent_id = ? ORDER BY id", (chat_id, parent_id)
            )
        return [_msg(r) for r in rows]

    def swipes(self, msg_id: int) -> list[Msg]:
        """The alternatives for this message (itself included), oldest first."""
        m = self.message(msg_id)
        return self.children(m.chat_id, m.parent_id)

    # -- writing -----------------------------------------------------------------------------
    def add(
        self,
        chat_id: int,
        role: str,
        speaker: str,
        content: str,
        *,
        parent_id: int | None | str = "head",
        adapter: str = "",
        n_tokens: int | None = None,
        meta: dict | None = None,
    ) -> Msg:
        """Append a message under `parent_id` (default: the current head) and make it the head."""
        if role not in ("system", "user", "assistant"):
            raise ChatError(f"message role {role!r}: expected system, user or assistant")
        parent = self.chat(chat_id).head_id if parent_id == "head" else parent_id
        parent_msg = self.message(int(parent)) if parent is not None else None
        if parent_msg is not None and parent_msg.chat_id != chat_id:
            raise ChatError(f"message {parent}: belongs to another chat than {chat_id}")
        with self.store.tx() as db:
            if parent_msg is not None:
                self._record_swipe_choice(db, parent_msg)
            cur = db.execute(
                """INSERT INTO chat_messages (chat_id, parent_id, role, speaker, content, adapter, n_tokens, meta)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (chat_id, parent, role, speaker, content, adapter, n_tokens, _dumps(meta or {})),
            )
            msg_id = int(cur.lastrowid or 0)
            db.execute("UPDATE chats SET head_id = ? WHERE id = ?", (msg_id, chat_id))
        return self.message(msg_id)

    def add_swipe(self, msg_id: int, content: str, **kw: Any) -> Msg:
        """A new alternative beside `msg_id` (same parent, same speaker); it becomes the head."""
        m = self.message(msg_id)
        kw.setdefault("adapter", m.adapter)
        return self.add(m.chat_id, m.role, m.speaker, content, parent_id=m.parent_id, **kw)

    def select(self, msg_id: int, *, follow: bool = True) -> Msg:
        """Show `msg_id` (e.g. another swipe); with `follow`, continue down its newest replies."""
        m = self.message(msg_id)
        head = self._newest_leaf(m) if follow else m
        with self.store.tx() as db:
            db.execute("UPDATE chats SET head_id = ? WHERE id = ?", (head.id, m.chat_id))
        return head

    def _newest_leaf(self, m: Msg) -> Msg:
        while True:
            kids = self.children(m.chat_id, m.id)
            if not kids:
                return m
            m = kids[-1]

    def rewind(self, msg_id: int) -> Msg:
        """Make `msg_id` the head; what came after stays in the tree as another branch."""
        return self.select(msg_id, follow=False)

    def edit(self, msg_id: int, content: str, *, n_tokens: int | None = None) -> Msg:
        """Change a message in place. Editing a persona's reply also records a preference pair."""
        m = self.message(msg_id)
        if content == m.content:
            return m
        meta = dict(m.meta)
        meta.setdefault("original", m.content)
        persona = meta.get("persona_id") or m.speaker
        with self.store.tx() as db:
            db.execute(
                "UPDATE chat_messages SET content = ?, n_tokens = ?, meta = ? WHERE id = ?",
                (content, n_tokens, _dumps(meta), msg_id),
            )
            if m.role == "assistant":
                # The model's original reply (kept in meta) against the latest edit, one pair per reply.
                from persona_studio.prefs import store as prefs

                path = self.path(m.chat_id, m.parent_id) if m.parent_id is not None else []
                prefs.record_chat_edit(
                    db, persona_id=persona, message_id=msg_id, prompt=prefs.chat_prompt(path, persona),
                    original=meta["original"], edited=content, pii=self.pii, meta={"chat_id": m.chat_id},
                )
        return self.message(msg_id)

    def _record_swipe_choice(self, db: Any, kept: Msg) -> None:
        """Continuing from a persona reply that has swipes: the kept one is preferred to the others."""
        if kept.role != "assistant":
            return
        swipes = [s for s in self.children(kept.chat_id, kept.parent_id) if s.role == "assistant"
                  and s.speaker == kept.speaker and s.id != kept.id]
        if not swipes:
            return
        from persona_studio.prefs import store as prefs

        path = self.path(kept.chat_id, kept.parent_id) if kept.parent_id is not None else []
        prefs.record_swipe_choice(db, persona_id=kept.speaker, kept=kept, passed=swipes,
                                  prompt=prefs.chat_prompt(path, kept.speaker), pii=self.pii)

    def delete(self, msg_id: int) -> int | None:
        """Delete a message and everything below it; returns the new head id.

        If the shown path ran through it, the head moves to its newest remaining sibling
        (a swipe), else to its parent.
        """
        m = self.message(msg_id)
        chat = self.chat(m.chat_id)
        on_path = chat.head_id is not None and any(p.id == msg_id for p in self.path(m.chat_id))
        head = chat.head_id
        if on_path:
            rest = [x for x in self.children(m.chat_id, m.parent_id) if x.id != msg_id]
            head = self._newest_leaf(rest[-1]).id if rest else m.parent_id
        with self.store.tx() as db:
            db.execute("DELETE FROM chat_messages WHERE id = ?", (msg_id,))  # children cascade
            db.execute("UPDATE chats SET head_id = ? WHERE id = ?", (head, m.chat_id))
        return head

    def branch(self, msg_id: int, *, title: str = "") -> Chat:
        """A new chat holding a copy of the path root → `msg_id`, to continue separately."""
        m = self.message(msg_id)
        src = self.chat(m.chat_id)
        path = self.path(m.chat_id, msg_id)
        with self.store.tx() as db:
            cur = db.execute(
                "INSERT INTO chats (title, kind, personas, settings) VALUES (?, ?, ?, ?)",
                (title or f"{src.title or 'chat ' + str(src.id)} (branch)", src.kind,
                 _dumps(src.personas), _dumps(src.settings)),
            )
            new_id = int(cur.lastrowid or 0)
            parent: int | None = None
            for p in path:
                cur = db.execute(
                    """INSERT INTO chat_messages (chat_id, parent_id, role, speaker, content, adapter, n_tokens,
                       meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                    (new_id, parent, p.role, p.speaker, p.content, p.adapter, p.n_tokens,
                     _dumps({**p.meta, "branched_from": p.id})),
                )
                parent = int(cur.lastrowid or 0)
            db.execute("UPDATE chats SET head_id = ? WHERE id = ?", (parent, new_id))
        return self.chat(new_id)

    def preferences(self, persona_id: str | None = None) -> list[dict]:
        """Preference pairs (every source; see prefs/store.py), oldest first."""
        from persona_studio.prefs import store as prefs

        return [p.to_dict() for p in prefs.list_pairs(self.store, persona_id, limit=-1)]
