"""Persona cards: `personas/<id>/persona.jsonc`, and Character Card V1/V2/V3 in and out.

persona.jsonc holds every card field at the top level (plus `talkativeness`), so a user can
edit it by hand; exported cards carry talkativeness in `data.extensions.talkativeness`, where
character-chat front ends keep it. Anything a card has that we don't model (unknown
`extensions` keys, unknown `data` keys) is kept verbatim so a round trip loses nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_studio import jsonc, jsondepth
from persona_studio.errors import UserError
from persona_studio.termsafe import strip_controls
from persona_studio.workspace import PERSONA_ID, Workspace, atomic_write, check_persona_id


class CardError(UserError, ValueError):
    """A one-line error about a persona file or a character card: `where: key: problem`."""


# Cards are untrusted files from the internet. Real ones with big lorebooks run to a few MB.
MAX_CARD_BYTES = 8 << 20  # a card's JSON text, and a persona.jsonc
MAX_CARD_FILE_BYTES = 32 << 20  # a card file on disk (a PNG carries its image as well)
MAX_CARD_DEPTH = 32  # pyjson5, which reads persona.jsonc back, nests no deeper by default


def clean_text(text: str) -> str:
    """`text` without control characters (CR and CRLF become LF): ESC/CSI/OSC sequences in a
    card field would otherwise reach the terminal (CLI output, and Textual passes them on too)."""
    return strip_controls(text)


def clean(value: Any) -> Any:
    """Every string in a parsed card (keys too) through clean_text. Card data is cleaned as
    it comes in, so no later display of any field can write a raw escape sequence."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


def check_size(source: str, size: int, limit: int = MAX_CARD_BYTES) -> None:
    if size > limit:
        raise CardError(f"{source}: too big for a character card ({_mb(size)}; the limit is {_mb(limit)})")


def parse_card_json(raw: bytes, source: str) -> Any:
    """A card's JSON text (from a .json file or a PNG chunk) parsed within the size and
    nesting limits; CardError (one line) otherwise."""
    check_size(source, len(raw))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CardError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    try:
        return jsondepth.loads(text, MAX_CARD_DEPTH)
    except jsondepth.TooDeep as exc:
        line = jsondepth.line_of(text, exc.offset)
        raise CardError(f"{source}:{line}: {exc} (refused)") from None
    except json.JSONDecodeError as exc:
        raise CardError(f"{source}:{exc.lineno}: not valid JSON: {exc.msg}") from None


@dataclass
class Persona:
    id: str
    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    alternate_greetings: list[str] = field(default_factory=list)
    mes_example: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    talkativeness: float = 0.5
    tags: list[str] = field(default_factory=list)
    creator: str = ""
    creator_notes: str = ""
    character_version: str = ""
    character_book: dict | None = None
    extensions: dict = field(default_factory=dict)
    # V3 additions, kept so a V3 card survives import -> export.
    nickname: str = ""
    group_only_greetings: list[str] = field(default_factory=list)
    creator_notes_multilingual: dict = field(default_factory=dict)
    source: list[str] = field(default_factory=list)
    assets: list[dict] | None = None
    creation_date: int | None = None
    modification_date: int | None = None
    # Unknown keys of a card's `data` object, kept verbatim.
    extra: dict = field(default_factory=dict)


# Fields that live in a card's `data` object as-is (talkativeness moves into extensions).
V2_FIELDS = (
    "name", "description", "personality", "scenario", "first_mes", "mes_example", "creator_notes",
    "system_prompt", "post_history_instructions", "alternate_greetings", "character_book", "tags",
    "creator", "character_version", "extensions",
)
V3_ONLY = (
    "nickname", "creator_notes_multilingual", "source", "group_only_greetings", "assets",
    "creation_date", "modification_date",
)
V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
_FIELDS = [f.name for f in dataclasses.fields(Persona)]
_HINTS = typing.get_type_hints(Persona)


# -- validation --------------------------------------------------------------------------------
def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), f"a {type(v).__name__}"
    )


def _check(name: str, v: Any, fail: typing.Callable[[str], typing.NoReturn]) -> Any:
    """Check one Persona field's value against its type; return the (normalised) value."""
    tp = _HINTS[name]
    if name == "talkativeness":
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
            fail(f"expected a number from 0 to 1, got {v!r}")
        return float(v)
    if name in ("creation_date", "modification_date"):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            fail(f"expected unix seconds (a number) or null, got {_kind(v)}")
        return None if v is None else int(v)
    if tp is str:
        if not isinstance(v, str):
            fail(f"expected a string, got {_kind(v)}")
        return v
    if tp == list[str]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            fail(f"expected a list of strings, got {_kind(v)}")
        return list(v)
    if name == "assets":
        if v is not None and (not isinstance(v, list) or not all(isinstance(x, dict) for x in v)):
            fail(f"expected a list of objects or null, got {_kind(v)}")
        return v
    if name == "character_book":
        if v is None:
            return None
        if not isinstance(v, dict):
            fail(f"expected an object or null, got {_kind(v)}")
        entries = v.get("entries", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            fail("entries: expected a list of objects")
        for i, e in enumerate(entries):
            if not isinstance(e.get("content", ""), str):
                fail(f"entries[{i}].content: expected a string")
            keys = e.get("keys", [])
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                fail(f"entries[{i}].keys: expected a list of strings")
        return v
    if tp is dict:
        if not isinstance(v, dict):
            fail(f"expected an object, got {_kind(v)}")
        return v
    raise AssertionError(f"unhandled field {name}")  # pragma: no cover - schema and checker drift


def _build(raw: dict[str, Any], fail_at: typing.Callable[[str, str], typing.NoReturn]) -> Persona:
    kwargs: dict[str, Any] = {}
    for key, v in raw.items():
        kwargs[key] = _check(key, v, lambda msg, k=key: fail_at(k, msg))
    if not kwargs.get("name", "").strip():
        fail_at("name", "a persona needs a non-empty name")
    return Persona(**kwargs)


# -- persona.jsonc -----------------------------------------------------------------------------
def persona_path(ws: Workspace, persona_id: str) -> Path:
    return ws.persona_dir(persona_id) / "persona.jsonc"


def load_persona(ws: Workspace, persona_id: str) -> Persona:
    path = persona_path(ws, persona_id)
    rel = path.relative_to(ws.root).as_posix()
    if not path.exists():
        raise CardError(f"{rel}: no such persona (known: {', '.join(ws.persona_ids()) or 'none'})")
    try:
        check_size(rel, path.stat().st_size)
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CardError(f"{rel}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        raw = clean(jsonc.loads(text, rel))
    except jsonc.JsoncError as exc:
        raise CardError(str(exc)) from None
    lines = jsonc.key_lines(text)

    def fail_at(key: str, msg: str) -> typing.NoReturn:
        line = jsonc.line_of(lines, (key,))
        raise CardError(f"{rel}:{line or 1}: {key}: {msg}")

    if not isinstance(raw, dict):
        raise CardError(f"{rel}:1: (top level): expected an object, got {_kind(raw)}")
    if "id" in raw and raw["id"] != persona_id:
        fail_at("id", f"says {raw['id']!r} but the directory is {persona_id!r} (the directory name wins; fix one)")
    raw = {k: v for k, v in raw.items() if k != "id"}
    for key in raw:
        if key not in _FIELDS:
            close = difflib.get_close_matches(str(key), _FIELDS, n=1, cutoff=0.6)
            fail_at(key, "unknown key" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return _build({"id": persona_id, **raw}, fail_at)


def save_persona(ws: Workspace, persona: Persona) -> Path:
    check_persona_id(persona.id)
    path = persona_path(ws, persona.id)
    body = {k: v for k, v in dataclasses.asdict(persona).items() if k != "id"}
    # Empty V3-only fields and `extra` stay out of hand-edited files unless they carry something.
    for key in (*V3_ONLY, "extra"):
        if body[key] in (None, "", [], {}):
            del body[key]
    header = (
        f"// Persona '{persona.id}' (JSONC: comments and trailing commas are fine).\n"
        "// Card fields as in Character Card V2/V3; talkativeness (0-1) is how eagerly this persona\n"
        "// speaks up in a tea party. Lore files go in lore/ beside this file.\n"
    )
    atomic_write(path, header + json.dumps(body, ensure_ascii=False, indent=2) + "\n")
    return path


def list_personas(ws: Workspace) -> list[Persona]:
    return [load_persona(ws, pid) for pid in ws.persona_ids()]


# -- Character Card V1/V2/V3 -------------------------------------------------------------------
def _card_extensions(p: Persona) -> dict:
    ext = dict(p.extensions)
    ext["talkativeness"] = p.talkativeness
    return ext


def to_card_v2(p: Persona) -> dict:
    data: dict[str, Any] = {k: getattr(p, k) for k in V2_FIELDS}
    data["extensions"] = _card_extensions(p)
    if data["character_book"] is None:
        del data["character_book"]
    data.update({k: v for k, v in p.extra.items() if k not in data})
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}


def to_card_v3(p: Persona) -> dict:
    card = to_card_v2(p)
    data = card["data"]
    for k in ("nickname", "creator_notes_multilingual", "source", "group_only_greetings"):
        data[k] = getattr(p, k)
    for k in ("assets", "creation_date", "modification_date"):
        if getattr(p, k) is not None:
            data[k] = getattr(p, k)
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": data}


def slug(name: str) -> str:
    """A persona id from a display name; names without ASCII letters get a stable hash id."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-_")[:64].strip("-_")
    if s and PERSONA_ID.match(s):
        return s
    return "persona-" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]


def from_card(d: dict, persona_id: str | None = None, source: str = "card") -> Persona:
    """A Persona from a parsed card (V1 flat, V2 or V3); `source` names the card in errors."""
    if not isinstance(d, dict):
        raise CardError(f"{source}: a card must be a JSON object, got {_kind(d)}")
    d = clean(d)
    spec = d.get("spec")
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = d.get("data")
        if not isinstance(data, dict):
            raise CardError(f"{source}: data: expected an object, got {_kind(data)}")
        prefix = "data."
    elif spec is None and isinstance(d.get("name"), str):
        data = {k: d[k] for k in V1_FIELDS if k in d}  # V1: only these fields are defined
        prefix = ""
        if "talkativeness" in d:
            data["extensions"] = {"talkativeness": d["talkativeness"]}
    else:
        raise CardError(f"{source}: spec: not a character card (spec {spec!r}; expected chara_card_v2 or v3)")

    def fail_at(key: str, msg: str) -> typing.NoReturn:
        raise CardError(f"{source}: {prefix}{key}: {msg}")

    raw: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, v in data.items():
        if key in _FIELDS and key not in ("id", "talkativeness", "extra"):
            raw[key] = v
        else:
            extra[key] = v
    ext = raw.get("extensions")
    if ext is None:
        ext = {}
    if isinstance(ext, dict):  # anything else is reported by _build below
        ext = dict(ext)
        if "talkativeness" in ext:
            raw["talkativeness"] = _talkativeness(
                ext.pop("talkativeness"), lambda m: fail_at("extensions.talkativeness", m)
            )
    raw["extensions"] = ext
    if spec == "chara_card_v2":
        # V3-only keys in a V2 card are unknown there: keep them as extra, not as fields.
        for k in V3_ONLY:
            if k in raw:
                extra[k] = raw.pop(k)
    raw["extra"] = extra
    pid = check_persona_id(persona_id) if persona_id else slug(str(raw.get("name", "")))
    return _build({"id": pid, **raw}, fail_at)


def _talkativeness(v: Any, fail: typing.Callable[[str], typing.NoReturn]) -> float:
    # Front ends often store it as a string ("0.5"); an empty value means the default.
    if v in ("", None):
        return 0.5
    try:
        f = float(v)
    except (TypeError, ValueError):
        fail(f"expected a number from 0 to 1, got {v!r}")
    if not 0.0 <= f <= 1.0:
        fail(f"expected a number from 0 to 1, got {v!r}")
    return f


def read_card_file(path: str | Path) -> dict:
    """Parse a card from .json or .png (tEXt 'ccv3' preferred, else 'chara')."""
    from persona_studio.persona import png

    path = Path(path)
    try:
        check_size(str(path), path.stat().st_size, MAX_CARD_FILE_BYTES)
        blob = path.read_bytes()
    except OSError as exc:
        raise CardError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if blob.startswith(png.SIGNATURE) or path.suffix.lower() == ".png":
        return png.read_card(blob, str(path))
    card = parse_card_json(blob, str(path))
    if not isinstance(card, dict):
        raise CardError(f"{path}: a card must be a JSON object, got {_kind(card)}")
    return card


def write_card_png(card: dict, path: str | Path, image: bytes | None = None) -> None:
    """Write `card` into a PNG: V3 cards get 'ccv3' plus a V2 'chara' for older readers."""
    from persona_studio.persona import png

    chunks: list[tuple[str, dict]] = []
    if card.get("spec") == "chara_card_v3":
        chunks.append(("chara", to_card_v2(from_card(card, "x"))))
        chunks.append(("ccv3", card))
    else:
        chunks.append(("chara", card))
    base = image if image is not None else png.default_image(str(card.get("data", card).get("name", "")))
    atomic_write(Path(path), png.with_text_chunks(base, chunks, source=str(path)))
