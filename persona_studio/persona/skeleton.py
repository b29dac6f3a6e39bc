"""A new persona's card as a commented JSONC skeleton, so a fresh workspace can import at once.

The file is written for a person to fill in: every field is there with a comment saying what
it is for; only `name` needs a value for the persona to load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from persona_studio.errors import UserError
from persona_studio.workspace import PERSONA_ID, atomic_write


class PersonaExists(UserError, FileExistsError):
    pass


_SKELETON = """\
// Persona '{id}' (JSONC: comments and trailing commas are fine). Written by `persona new`;
// fill in what you like: only "name" is required. Card fields as in Character Card V2/V3.
{{
  // The name the persona goes by in chats and in {{{{char}}}}.
  "name": {name},
  // A short form of the name (optional).
  "nickname": "",
  // Who they are: age, looks, job, where they live, what they care about.
  "description": "",
  // How they talk and behave: a few adjectives and habits.
  "personality": "",
  // Where a chat starts and what is going on.
  "scenario": "",
  // The first message a new chat opens with (optional).
  "first_mes": "",
  "alternate_greetings": [],
  // Example dialogue: <START> blocks of {{{{user}}}}: / {{{{char}}}}: lines.
  "mes_example": "",
  // The system prompt of chats and of every training sample; empty means
  // "You are <name>. Stay in character as <name>."
  "system_prompt": "",
  "post_history_instructions": "",
  // How eagerly this persona speaks up in a tea party, 0 to 1.
  "talkativeness": 0.5,
  "tags": [],
  "creator": "",
  "creator_notes": "",
  "character_version": "1.0",
  // Keep unknown keys here: they survive card export and import.
  "extensions": {{}}
}}
"""


def skeleton_text(persona_id: str, name: str) -> str:
    return _SKELETON.format(id=persona_id, name=json.dumps(name, ensure_ascii=False))


def new_persona(ws: Any, persona_id: str, name: str | None = None) -> Path:
    """Write personas/<id>/persona.jsonc (a commented skeleton); refuse a bad or taken id."""
    if not PERSONA_ID.match(persona_id):
        raise UserError(f"bad persona id {persona_id!r}: use lowercase letters, digits, '-' and '_' "
                        "(up to 64, starting with a letter or digit)")
    path = Path(ws.personas_dir) / persona_id / "persona.jsonc"
    if path.exists():
        raise PersonaExists(f"persona '{persona_id}' already exists ({path})")
    name = (name or "").strip() or persona_id
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, skeleton_text(persona_id, name))
    return path
