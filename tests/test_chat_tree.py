"""The chat message tree in the real SQLite store: swipes, edits, deletes, rewinds, branches."""

from __future__ import annotations

import pytest

from persona_studio.chat.tree import ChatError, ChatTree


@pytest.fixture
def tree(workspace):
    store = workspace.store()
    yield ChatTree(store)
    store.close()


def _texts(tree: ChatTree, chat_id: int) -> list[str]:
    return [m.content for m in tree.path(chat_id)]


def test_add_builds_the_shown_path_and_persists(tree, workspace):
    chat = tree.create_chat(["alice"], title="t")
    tree.add(chat.id, "user", "user", "hi", n_tokens=1)
    r = tree.add(chat.id, "assistant", "alice", "hello", adapter="alice/v0001", n_tokens=2, meta={"lore": []})
    assert _texts(tree, chat.id) == ["hi", "hello"]
    assert tree.chat(chat.id).head_id == r.id
    # a second connection sees the same tree: it is in the database, not in memory
    other = ChatTree(workspace.store())
    path = other.path(chat.id)
    assert [(m.role, m.speaker, m.adapter, m.n_tokens) for m in path] == [
        ("user", "user", "", 1), ("assistant", "alice", "alice/v0001", 2)]
    other.store.close()


def test_swipes_are_siblings_and_select_switches_the_shown_one(tree):
    chat = tree.create_chat(["alice"])
    u = tree.add(chat.id, "user", "user", "hi")
    r1 = tree.add(chat.id, "assistant", "alice", "first")
    r2 = tree.add_swipe(r1.id, "second")
    assert r2.parent_id == u.id and r2.adapter == r1.adapter
    assert [m.content for m in tree.swipes(r1.id)] == ["first", "second"]
    assert _texts(tree, chat.id) == ["hi", "second"]
    tree.select(r1.id)
    assert _texts(tree, chat.id) == ["hi", "first"]


def test_select_follows_the_newest_reply_below(tree):
    chat = tree.create_chat(["alice"])
    tree.add(chat.id, "user", "user", "hi")
    r1 = tree.add(chat.id, "assistant", "alice", "a")
    tree.add(chat.id, "user", "user", "more")
    tree.add_swipe(r1.id, "b")
    assert _texts(tree, chat.id) == ["hi", "b"]
    tree.select(r1.id)
    assert _texts(tree, chat.id) == ["hi", "a", "more"]


def test_rewind_then_add_branches_and_keeps_the_old_branch(tree):
    chat = tree.create_chat(["alice"])
    u1 = tree.add(chat.id, "user", "user", "one")
    a1 = tree.add(chat.id, "assistant", "alice", "two")
    tree.add(chat.id, "user", "user", "three")
    tree.rewind(u1.id)
    assert _texts(tree, chat.id) == ["one"]
    tree.add(chat.id, "assistant", "alice", "other two")
    assert _texts(tree, chat.id) == ["one", "other two"]
    tree.select(a1.id)
    assert _texts(tree, chat.id) == ["one", "two", "three"]


def test_edit_persona_reply_records_a_preference_pair(tree):
    chat = tree.create_chat(["alice"])
    tree.add(chat.id, "user", "user", "hi")
    r = tree.add(chat.id, "assistant", "alice", "bad reply")
    tree.edit(r.id, "good reply", n_tokens=2)
    m = tree.message(r.id)
    assert m.content == "good reply" and m.meta["original"] == "bad reply" and m.n_tokens == 2
    prefs = tree.preferences("alice")
    assert len(prefs) == 1
    assert prefs[0]["rejected"] == "bad reply" and prefs[0]["chosen"] == "good reply"
    assert prefs[0]["prompt"] == [{"role": "user", "speaker": "user", "content": "hi"}]
    assert prefs[0]["chat_message_id"] == r.id


def test_edit_user_message_records_no_preference(tree):
    chat = tree.create_chat(["alice"])
    u = tree.add(chat.id, "user", "user", "hi")
    tree.edit(u.id, "hello")
    assert tree.message(u.id).content == "hello"
    assert tree.preferences() == []


def test_delete_removes_the_subtree_and_moves_the_head(tree):
    chat = tree.create_chat(["alice"])
    u = tree.add(chat.id, "user", "user", "hi")
    r1 = tree.add(chat.id, "assistant", "alice", "a")
    r2 = tree.add_swipe(r1.id, "b")
    tree.add(chat.id, "user", "user", "after b")
    head = tree.delete(r2.id)  # its reply goes too; the head falls back to swipe "a"
    assert head == r1.id
    assert _texts(tree, chat.id) == ["hi", "a"]
    assert [m.content for m in tree.children(chat.id, u.id)] == ["a"]
    assert tree.delete(r1.id) == u.id
    assert _texts(tree, chat.id) == ["hi"]
    with pytest.raises(ChatError, match="no such message"):
        tree.message(r2.id)


def test_delete_off_the_shown_path_keeps_the_head(tree):
    chat = tree.create_chat(["alice"])
    tree.add(chat.id, "user", "user", "hi")
    r1 = tree.add(chat.id, "assistant", "alice", "a")
    r2 = tree.add_swipe(r1.id, "b")
    assert tree.delete(r1.id) == r2.id
    assert _texts(tree, chat.id) == ["hi", "b"]


def test_branch_copies_the_path_into_a_new_chat(tree):
    chat = tree.create_chat(["alice", "bob"], kind="party", title="tea")
    tree.add(chat.id, "user", "user", "hi")
    a = tree.add(chat.id, "assistant", "alice", "hello", adapter="alice/v0001")
    tree.add(chat.id, "assistant", "bob", "yo")
    new = tree.branch(a.id)
    assert new.id != chat.id and new.kind == "party" and new.personas == ["alice", "bob"]
    path = tree.path(new.id)
    assert [m.content for m in path] == ["hi", "hello"]
    assert path[1].adapter == "alice/v0001" and path[1].meta["branched_from"] == a.id
    tree.add(new.id, "user", "user", "only here")
    assert _texts(tree, chat.id) == ["hi", "hello", "yo"]


def test_bad_ids_are_one_line_errors(tree):
    with pytest.raises(ChatError, match="chat 99: no such chat"):
        tree.add(99, "user", "user", "x")
    chat = tree.create_chat(["alice"])
    other = tree.create_chat(["bob"])
    m = tree.add(other.id, "user", "user", "x")
    with pytest.raises(ChatError, match="belongs to another chat"):
        tree.add(chat.id, "user", "user", "y", parent_id=m.id)
    with pytest.raises(ChatError, match="role"):
        tree.add(chat.id, "narrator", "user", "y")
