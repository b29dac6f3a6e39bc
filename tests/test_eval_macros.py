"""Card placeholders ({{char}}, {{user}}) are filled in identity samples and in every chat prompt."""

from __future__ import annotations

from dataclasses import dataclass

from persona_studio.chat.party import USER
from persona_studio.chat.prompt import build_messages
from persona_studio.train import identity
from tests.train_helpers import add_persona, make_ws


@dataclass
class _P:
    id: str = "alice"
    name: str = "Alice"
    description: str = "{{char}} pours tea for {{user}}."
    personality: str = "kind to {{user}}"
    scenario: str = ""
    mes_example: str = ""
    system_prompt: str = "You are {{char}}, talking with {{user}}."
    post_history_instructions: str = ""


@dataclass
class _H:
    role: str
    speaker: str
    content: str


def test_identity_samples_have_the_macros_filled(tmp_path, tiny_model) -> None:
    ws = make_ws(tmp_path / "ws", tiny_model)
    add_persona(ws, "alice", description="{{char}} pours tea for {{user}}.", personality="kind to {{user}}",
                system_prompt="You are {{char}}.")
    card = identity.load_card(ws, "alice")
    assert card.system_prompt == "You are Alice." and card.description == "Alice pours tea for User."
    got = identity.identity_samples(card, 8, seed=0)
    text = " ".join(s["system"] + " " + t["content"] for s in got for t in s["turns"])
    assert "{{" not in text and "Alice pours tea for User." in text
    raw = identity.CardInfo("Bob", "{{char}} builds robots.", "", "")
    got = identity.identity_samples(raw, 3)
    assert all(s["system"] == "You are Bob. Stay in character as Bob." for s in got)
    assert not any("{{char}}" in s["turns"][1]["content"] for s in got)


def test_every_prompt_message_has_the_macros_filled() -> None:
    history = [_H("assistant", "alice", "Hello {{user}}, I am {{char}}!"), _H("user", USER, "hi {{char}}")]
    msgs = build_messages(_P(), history, {"alice": "Alice", USER: "Sam"}, user_name="Sam")
    assert msgs[0]["content"].startswith("You are Alice, talking with Sam.")
    assert "Alice pours tea for Sam." in msgs[0]["content"]
    assert msgs[1] == {"role": "assistant", "content": "Hello Sam, I am Alice!"}
    assert msgs[2] == {"role": "user", "content": "hi Alice"}
