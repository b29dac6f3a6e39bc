"""Speaker strategies (pure logic, seeded RNG) and prompt assembly for one persona's turn."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from persona_studio.chat import party, prompt
from persona_studio.chat.party import USER, Line, Member

A, B, C = Member("alice", "Alice", 0.5), Member("bob", "Bob", 0.5), Member("carol", "Carol", 0.5)


def test_mentioned_in_order_of_mention_word_boundaries():
    assert party.mentioned("Carol, what does alice think?", [A, B, C]) == ["carol", "alice"]
    assert party.mentioned("Bobby is not Bob's cousin", [A, B, C]) == ["bob"]
    assert party.mentioned("nobody here", [A, B, C]) == []
    xm = Member("xiaoming", "小明")
    assert party.mentioned("小明你好", [xm, A]) == ["xiaoming"]


def test_natural_mentions_first_then_talkative_members():
    # talkativeness 0 and 1 make the random part certain; carol is named, so she goes first
    members = [Member("alice", "Alice", 0.0), Member("bob", "Bob", 1.0), Member("carol", "Carol", 0.0)]
    assert party.natural(members, [Line(USER, "Carol?")], random.Random(1)) == ["carol", "bob"]
    assert party.natural(members, [Line(USER, "Alice and Carol?")], random.Random(1)) == ["alice", "carol", "bob"]


def test_natural_last_speaker_does_not_answer_itself_unless_allowed():
    quiet = [Member("alice", "Alice", 1.0), Member("bob", "Bob", 0.0)]
    hist = [Line("alice", "I, Alice, love tea.")]
    assert party.natural(quiet, hist, random.Random(0)) == ["bob"]  # fallback pick, never alice
    assert party.natural(quiet, hist, random.Random(0), allow_self=True) == ["alice"]


def test_natural_nobody_talkative_picks_exactly_one_random_member():
    mute = [Member(m.id, m.name, 0.0) for m in (A, B, C)]
    picks = {tuple(party.natural(mute, [Line(USER, "hi")], random.Random(seed))) for seed in range(30)}
    assert all(len(p) == 1 for p in picks)
    assert {p[0] for p in picks} == {"alice", "bob", "carol"}


def test_natural_is_reproducible_with_a_seed():
    hist = [Line(USER, "hello all")]
    runs = [party.natural([A, B, C], hist, random.Random(7)) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]


def test_list_order_moves_last_speaker_to_the_end():
    assert party.list_order([A, B, C], []) == ["alice", "bob", "carol"]
    assert party.list_order([A, B, C], [Line("alice", "x")]) == ["bob", "carol", "alice"]
    assert party.list_order([A, B, C], [Line("alice", "x")], allow_self=True) == ["alice", "bob", "carol"]


def test_pooled_picks_someone_who_has_not_spoken_since_the_user():
    hist = [Line("carol", "old"), Line(USER, "hi"), Line("alice", "a"), Line("bob", "b")]
    for seed in range(10):
        assert party.pooled([A, B, C], hist, random.Random(seed)) == ["carol"]
    # everyone spoke: anyone but the last speaker
    hist.append(Line("carol", "c"))
    seen = {party.pooled([A, B, C], hist, random.Random(s))[0] for s in range(20)}
    assert seen == {"alice", "bob"}


def test_manual_picks_nobody_and_unknown_strategy_fails():
    assert party.next_speakers("manual", [A, B], [], random.Random(0)) == []
    with pytest.raises(ValueError, match="unknown party strategy"):
        party.next_speakers("loudest", [A, B], [], random.Random(0))


@dataclass
class P:
    id: str
    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    mes_example: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""


@dataclass
class H:
    role: str
    speaker: str
    content: str


def test_build_messages_own_lines_are_assistant_others_are_named_user_lines():
    alice = P("alice", "Alice", description="{{char}} likes books.", scenario="A garden party with {{user}}.",
              post_history_instructions="Keep it short.")
    names = {"alice": "Alice", "bob": "Bob", USER: "Dana"}
    hist = [H("user", USER, "Hi all"), H("assistant", "bob", "Hello Dana"), H("assistant", "alice", "Hi!"),
            H("assistant", "bob", "Alice, tea?")]
    msgs = prompt.build_messages(alice, hist, names, user_name="Dana",
                                 lore=[prompt.Snippet("The garden has roses.", "lore/garden.md", 0.2)])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    sys_text = msgs[0]["content"]
    assert "Alice likes books." in sys_text and "A garden party with Dana." in sys_text
    assert "group conversation between Alice, Bob and Dana" in sys_text
    assert "- The garden has roses." in sys_text
    assert msgs[1]["content"] == "Dana: Hi all\nBob: Hello Dana"
    assert msgs[2]["content"] == "Hi!"
    assert msgs[3]["content"] == "Bob: Alice, tea?\n\n[Keep it short.]"


def test_build_messages_empty_history_gets_an_opening_cue():
    msgs = prompt.build_messages(P("bob", "Bob"), [], {"bob": "Bob", USER: "User"})
    assert msgs[0]["content"].startswith("You are Bob.")
    assert msgs[-1] == {"role": "user", "content": "[Bob starts the conversation.]"}


def test_stop_strings_and_post_hoc_cut_at_other_speakers():
    names = {"alice": "Alice", "bob": "Bob", USER: "User"}
    assert prompt.stop_strings("alice", names) == ["\nBob:", "\nUser:"]
    assert prompt.clean_reply("Alice: I love tea.\nBob: me too", "Alice", names) == "I love tea."
    assert prompt.clean_reply("Sure thing.\n  User: and then", "Alice", names) == "Sure thing."
    assert prompt.clean_reply("Bob: pretending to be Bob", "Alice", names) == ""
    assert prompt.clean_reply("Bobcats are wild: yes", "Alice", names) == "Bobcats are wild: yes"


def test_one_on_one_user_lines_are_bare():
    hist = [H("user", USER, "Hi"), H("assistant", "alice", "Hello"), H("user", USER, "How are you?")]
    msgs = prompt.build_messages(P("alice", "Alice"), hist, {"alice": "Alice", USER: "User"})
    assert [m["content"] for m in msgs[1:]] == ["Hi", "Hello", "How are you?"]
    assert "group conversation" not in msgs[0]["content"]
