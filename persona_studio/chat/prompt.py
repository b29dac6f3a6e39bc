"""Prompt assembly for one persona's turn: card → system prompt, shared history → messages.

The speaking persona's own past lines are `assistant` messages (that is how its adapter was
trained: raw replies); everyone else's lines are `user` messages prefixed "Name: ", merged
when consecutive so strict chat templates that insist on alternating roles still render.
Other speakers' names become stop strings, and a reply is cut post hoc at another speaker's
"Name:" so a persona never writes someone else's line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from persona_studio.chat.party import USER


class PersonaLike(Protocol):
    id: str
    name: str
    description: str
    personality: str
    scenario: str
    mes_example: str
    system_prompt: str
    post_history_instructions: str


class HistoryLike(Protocol):
    role: str
    speaker: str
    content: str


@dataclass
class Snippet:
    text: str
    source: str = ""
    distance: float = 0.0


def macros(text: str, char: str, user: str) -> str:
    """Character-card placeholders: {{char}} and {{user}} (any case; <BOT>/<USER> from V1 cards)."""
    text = re.sub(r"\{\{\s*char\s*\}\}|<BOT>", char, text, flags=re.IGNORECASE)
    return re.sub(r"\{\{\s*user\s*\}\}|<USER>", user, text, flags=re.IGNORECASE)


def system_text(
    persona: PersonaLike,
    *,
    others: Sequence[str],
    user_name: str,
    lore: Sequence[Any] = (),
    scenario: str = "",
) -> str:
    name = persona.name
    parts = [persona.system_prompt.strip() or f"You are {name}. Stay in character as {name}."]
    if persona.description.strip():
        parts.append(persona.description.strip())
    if persona.personality.strip():
        parts.append(f"{name}'s personality: {persona.personality.strip()}")
    scene = scenario.strip() or persona.scenario.strip()
    if scene:
        parts.append(f"Scenario: {scene}")
    if others:
        people = ", ".join(others)
        parts.append(
            f"This is a group conversation between {name}, {people} and {user_name}. "
            f"Write only {name}'s next message; never write lines for anyone else."
        )
    if lore:
        facts = "\n".join(f"- {s.text.strip()}" for s in lore if s.text.strip())
        parts.append(f"Things {name} knows:\n{facts}")
    if persona.mes_example.strip():
        parts.append(f"Examples of how {name} talks:\n{persona.mes_example.strip()}")
    return macros("\n\n".join(parts), name, user_name)


def build_messages(
    persona: PersonaLike,
    history: Sequence[HistoryLike],
    names: dict[str, str],
    *,
    user_name: str = "User",
    lore: Sequence[Any] = (),
    scenario: str = "",
) -> list[dict]:
    """Chat messages for `persona`'s next turn. `names` maps speaker ids to display names."""
    others = [n for sid, n in names.items() if sid not in (persona.id, USER)]
    msgs: list[dict] = [
        {"role": "system", "content": system_text(persona, others=others, user_name=user_name, lore=lore, scenario=scenario)}
    ]
    for h in history:
        if h.role == "system":
            continue
        # A card's greeting (first_mes) is stored as written: fill its {{char}}/{{user}} here,
        # {{char}} being whoever said the line.
        char = persona.name if h.speaker in (persona.id, USER) else names.get(h.speaker, h.speaker)
        content = macros(h.content, char, user_name)
        if h.speaker == persona.id:
            msgs.append({"role": "assistant", "content": content})
            continue
        who = user_name if h.speaker == USER else names.get(h.speaker, h.speaker)
        # One-on-one, the user's lines go in bare, as in the chat logs the adapter learned
        # from; in a group, names tell the persona who said what.
        line = f"{who}: {content}" if others else content
        if msgs[-1]["role"] == "user":
            msgs[-1]["content"] += "\n" + line
        else:
            msgs.append({"role": "user", "content": line})
    if msgs[-1]["role"] == "system":
        msgs.append({"role": "user", "content": f"[{persona.name} starts the conversation.]"})
    post = persona.post_history_instructions.strip()
    if post:
        last = msgs[-1] if msgs[-1]["role"] == "user" else None
        note = macros(post, persona.name, user_name)
        if last is not None:
            last["content"] += f"\n\n[{note}]"
        else:
            msgs.append({"role": "user", "content": f"[{note}]"})
    return msgs


def stop_strings(speaker_id: str, names: dict[str, str], user_name: str = "User") -> list[str]:
    """'\\nName:' for every other participant, so generation halts where their line would start."""
    others = {n for sid, n in names.items() if sid not in (speaker_id, USER)} | {user_name}
    return sorted(f"\n{n}:" for n in others if n)


def clean_reply(text: str, speaker_name: str, names: dict[str, str], user_name: str = "User") -> str:
    """Cut a reply where another speaker's line starts; drop the speaker's own 'Name:' prefix."""
    others = [n for n in {*names.values(), user_name} if n and n != speaker_name]
    for n in others:
        m = re.search(rf"(^|\n)\s*{re.escape(n)}\s*:", text)
        if m:
            text = text[: m.start()]
    text = re.sub(rf"^\s*{re.escape(speaker_name)}\s*:\s*", "", text)
    return text.strip()
