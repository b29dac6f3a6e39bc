"""Sessionizing: merge windows, conversation gaps, group-chat names, limits, splitting."""

from __future__ import annotations

import json

from persona_studio.clean.blocked import BlockedWords, load_words
from persona_studio.clean.dedup import Dedup, dumps, sample_hash
from persona_studio.clean.sessionize import Rules, Sessionizer

MIN = 60.0


def run(msgs: list[tuple[float, str, bool, str]], rules: Rules | None = None, key: str = "c") -> Sessionizer:
    s = Sessionizer(rules or Rules(combine_s=2 * MIN, qa_s=5 * MIN))
    for ts, speaker, is_me, text in msgs:
        s.add(key, ts, speaker, is_me, text)
    s.close_all()
    return s


def samples(s: Sessionizer) -> list[list[dict]]:
    return [turns for _, _, ss in s.done for turns in ss]


def test_merge_within_combine_window_and_multi_turn_within_qa_window() -> None:
    s = run([
        (0, "bob", False, "hi"),
        (60, "bob", False, "are you there"),  # 1 min later: same turn
        (120, "me", True, "yes"),  # reply within 5 min: next turn
        (150, "me", True, "what's up"),
        (400, "bob", False, "tea?"),  # 250 s after the last: still the same conversation
        (500, "me", True, "sure"),
    ])
    assert samples(s) == [[
        {"role": "user", "content": "hi\nare you there", "name": "bob"},
        {"role": "assistant", "content": "yes\nwhat's up"},
        {"role": "user", "content": "tea?", "name": "bob"},
        {"role": "assistant", "content": "sure"},
    ]]


def test_long_gap_starts_a_new_sample() -> None:
    s = run([
        (0, "bob", False, "hi"), (30, "me", True, "hey"),
        (30 + 6 * MIN, "bob", False, "later"), (40 + 6 * MIN, "me", True, "ok"),
    ])
    assert [[t["content"] for t in x] for x in samples(s)] == [["hi", "hey"], ["later", "ok"]]


def test_same_role_beyond_combine_window_cuts_the_conversation() -> None:
    s = run([
        (0, "bob", False, "q1"), (10, "me", True, "a1"),
        (10 + 3 * MIN, "me", True, "a2 (3 min later)"),  # > combine window, < qa window
        (20 + 3 * MIN, "bob", False, "q2"), (30 + 3 * MIN, "me", True, "a3"),
    ])
    got = [[t["content"] for t in x] for x in samples(s)]
    assert got == [["q1", "a1"], ["a2 (3 min later)", "q2", "a3"]]
    assert s.counts["cut_same_role_gap"] == 1


def test_group_chat_keeps_other_speakers_names() -> None:
    s = run([
        (0, "Alice", False, "hello all"), (10, "Carol", False, "hi!"), (20, "me", True, "hey both"),
        (30, "Carol", False, "how are you"), (40, "me", True, "good"),
    ])
    (sample,) = samples(s)
    assert sample[0] == {"role": "user", "content": "Alice: hello all\nCarol: hi!"}
    assert sample[2] == {"role": "user", "content": "how are you", "name": "Carol"}
    assert [t["role"] for t in sample] == ["user", "assistant", "user", "assistant"]


def test_trailing_user_turn_dropped_and_no_reply_is_no_sample() -> None:
    s = run([(0, "bob", False, "q"), (10, "me", True, "a"), (20, "bob", False, "unanswered")])
    assert [[t["content"] for t in x] for x in samples(s)] == [["q", "a"]]
    s = run([(0, "bob", False, "alone")])
    assert samples(s) == [] and s.counts["no_reply"] == 1


def test_max_turns_split_and_turn_length_limits() -> None:
    msgs = []
    for i in range(6):
        msgs += [(i * 20.0, "bob", False, f"q{i}"), (i * 20.0 + 10, "me", True, f"a{i}")]
    s = run(msgs, Rules(combine_s=5, qa_s=300, max_turns=4))
    got = [[t["content"] for t in x] for x in samples(s)]
    assert got == [["q0", "a0", "q1", "a1"], ["q2", "a2", "q3", "a3"], ["q4", "a4", "q5", "a5"]]
    # an odd max_turns: every piece after the first still opens with the user turn
    s = run(msgs[:6], Rules(combine_s=5, qa_s=300, max_turns=3))
    got = [[t["content"] for t in x] for x in samples(s)]
    assert got == [["q0", "a0"], ["q1", "a1"], ["q2", "a2"]]
    # a too-short or too-long turn cuts the conversation; what follows still makes samples
    s = run([(0, "bob", False, "q"), (5, "me", True, "x" * 50), (10, "bob", False, "q2"), (15, "me", True, "ok")],
            Rules(combine_s=1, qa_s=300, max_chars=20, min_chars=2))
    assert [[t["content"] for t in x] for x in samples(s)] == [["q2", "ok"]]
    assert s.counts["turn_too_long"] == 1 and s.counts["turn_too_short"] == 1


def test_cut_and_touch_and_chats_are_independent() -> None:
    s = Sessionizer(Rules(combine_s=120, qa_s=300))
    s.add("a", 0, "bob", False, "q")
    s.add("b", 1, "eve", False, "other chat")
    s.add("a", 2, "me", True, "a")
    s.cut("a")
    s.add("a", 3, "bob", False, "after cut")
    s.add("a", 4, "me", True, "r")
    s.add("b", 5, "me", True, "answer b")
    serial = s.touch("a", 5)
    s.close_all()
    by_key = {(k, n): ss for k, n, ss in s.done}
    assert [t["content"] for t in by_key[("a", 1)][0]] == ["q", "a"]
    assert [t["content"] for t in by_key[("a", serial)][0]] == ["after cut", "r"]
    assert [t["content"] for t in by_key[("b", 2)][0]] == ["other chat", "answer b"]


def test_messages_without_time_never_split_by_gaps() -> None:
    s = run([(None, "user", False, "q"), (None, "assistant", True, "a"), (None, "user", False, "q2"),
             (None, "assistant", True, "a2")])  # type: ignore[list-item]
    assert len(samples(s)) == 1 and len(samples(s)[0]) == 4


def test_blocked_words_case_insensitive_and_from_file(tmp_path) -> None:
    (tmp_path / "words.txt").write_text("# comment\nSecret\n\n机密 # inline comment\npassword\n", encoding="utf-8")
    words = load_words(["PASSWORD", " "], "words.txt", tmp_path)
    assert words == ["PASSWORD", "Secret", "机密"]
    b = BlockedWords(words)
    assert b.hits("my password is SECRET, 这是机密") == ["PASSWORD", "Secret", "机密"]
    assert b.hits("nothing here") == []
    assert BlockedWords([]).hits("password") == []


def test_dedup_drops_or_renames_repeats() -> None:
    turns = dumps([{"role": "user", "content": "引号\"a"}])
    assert json.loads(turns) == [{"role": "user", "content": "引号\"a"}] and "引号" in turns
    h = sample_hash("sys", turns)
    assert h == sample_hash("sys", dumps([{"role": "user", "content": "引号\"a"}]))
    assert h != sample_hash("other", turns) and len(h) == 32
    d = Dedup(True)
    assert d.check(h) == h and d.check(h) is None
    d = Dedup(False)
    assert [d.check(h), d.check(h), d.check(h)] == [h, f"{h}#2", f"{h}#3"]
