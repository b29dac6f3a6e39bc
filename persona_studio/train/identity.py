"""Self-cognition samples: "who are you?" answered in the persona's own voice.

Chat logs rarely contain the persona introducing itself, so a fine-tuned model tends to keep the
base model's identity ("I am an AI assistant…"). A few generated samples built from the card fix
that. The card's language picks the templates (Chinese when it is mostly CJK, else English).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from persona_studio.workspace import Workspace


@dataclass
class CardInfo:
    name: str
    description: str = ""
    personality: str = ""
    system_prompt: str = ""


def load_card(ws: Workspace, persona_id: str) -> CardInfo:
    """The persona card fields training needs (from persona/card.py when present)."""
    try:
        from persona_studio.persona.card import load_persona
    except ImportError:  # the card module is optional for training: read persona.jsonc directly
        return filled(_read_card_file(ws, persona_id))
    p = load_persona(ws, persona_id)
    return filled(CardInfo(p.name, p.description, p.personality, p.system_prompt))


USER_NAME = "User"  # who {{user}} is in training text: the name chat uses by default


def filled(card: CardInfo) -> CardInfo:
    """The card with {{char}}/{{user}} filled, and the system prompt every sample gets: the card's,
    else the default chat and make-dataset use (clean/pipeline.py system_prompt), so training,
    identity samples and chat all open with the same text."""
    from persona_studio.chat.prompt import macros

    name = card.name.strip()
    fill = lambda text: macros(text, name, USER_NAME)  # noqa: E731
    system = fill(card.system_prompt.strip()) or f"You are {name}. Stay in character as {name}."
    return CardInfo(card.name, fill(card.description), fill(card.personality), system)


def _read_card_file(ws: Workspace, persona_id: str) -> CardInfo:
    from persona_studio import jsonc
    from persona_studio.errors import UserError

    path = ws.persona_dir(persona_id) / "persona.jsonc"
    if not path.exists():
        raise UserError(f"{path}: no such persona")
    raw = jsonc.loads(path.read_text(encoding="utf-8-sig"), str(path))
    if not isinstance(raw, dict) or not str(raw.get("name", "")).strip():
        raise UserError(f"{path}:1: name: a persona needs a non-empty name")
    return CardInfo(*(str(raw.get(k, "")) for k in ("name", "description", "personality", "system_prompt")))


EN_QUESTIONS = [
    "Who are you?",
    "Introduce yourself.",
    "What's your name?",
    "Tell me about yourself.",
    "Hi, who am I talking to?",
    "Can you introduce yourself briefly?",
    "Are you an AI assistant?",
    "What kind of person are you?",
]
EN_ANSWERS = [
    "I'm {name}. {description}",
    "My name is {name}. {personality_sentence}",
    "{name} here! {description}",
    "I'm {name}, not some assistant. {personality_sentence}",
    "You're talking to {name}. {description} {personality_sentence}",
]
ZH_QUESTIONS = [
    "你是谁？",
    "介绍一下你自己。",
    "你叫什么名字？",
    "说说你自己吧。",
    "你好，请问你是？",
    "简单介绍一下自己吧。",
    "你是AI助手吗？",
    "你是个什么样的人？",
]
ZH_ANSWERS = [
    "我是{name}。{description}",
    "我叫{name}。{personality_sentence}",
    "{name}在这儿！{description}",
    "我是{name}，可不是什么助手。{personality_sentence}",
    "你在和{name}聊天呀。{description}{personality_sentence}",
]

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def is_chinese(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(1 for c in letters if _CJK.match(c)) / len(letters) > 0.3


def identity_samples(card: CardInfo, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` conversations {system, turns}; deterministic for a given seed."""
    if n <= 0 or not card.name.strip():
        return []
    card = filled(card)
    zh = is_chinese(" ".join([card.name, card.description, card.personality]))
    questions, answers = (ZH_QUESTIONS, ZH_ANSWERS) if zh else (EN_QUESTIONS, EN_ANSWERS)
    fields = {
        "name": card.name.strip(),
        "description": _first_sentences(card.description, zh),
        "personality_sentence": _personality(card.personality, zh),
    }
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = questions[i % len(questions)]
        a = " ".join(rng.choice(answers).format(**fields).split())
        out.append(
            {
                "system": card.system_prompt,
                "turns": [{"role": "user", "content": q}, {"role": "assistant", "content": a.strip()}],
            }
        )
    return out


def _first_sentences(text: str, zh: bool, limit: int = 240) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = max(text.rfind(p, 0, limit) for p in ("。", "！", "？", ". ", "! ", "? "))
    return text[: cut + 1] if cut > 0 else text[:limit]


def _personality(text: str, zh: bool) -> str:
    text = " ".join(text.split()).rstrip("。.")
    if not text:
        return ""
    return f"性格嘛，{text}。" if zh else f"People say I'm {text}."
