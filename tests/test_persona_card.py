"""Persona cards: persona.jsonc validation, Character Card V1/V2/V3 and PNG round trips, bad files."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import pytest

from persona_studio.errors import UserError
from persona_studio.persona import png
from persona_studio.persona.card import (
    Persona,
    from_card,
    list_personas,
    load_persona,
    read_card_file,
    save_persona,
    to_card_v2,
    to_card_v3,
    write_card_png,
)

REPO = Path(__file__).resolve().parents[1]


def wild_v2() -> dict:
    """A V2 card as front ends write it: extra extensions, unknown data keys, a book."""
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": "Ada Quill",
            "description": "A lighthouse keeper who writes letters to ships.",
            "personality": "patient, dry humour",
            "scenario": "A stormy night at the lighthouse.",
            "first_mes": "Mind the puddles. Tea?",
            "mes_example": "<START>\n{{user}}: Hello\n{{char}}: Evening.",
            "creator_notes": "test card",
            "system_prompt": "",
            "post_history_instructions": "",
            "alternate_greetings": ["Back again?"],
            "tags": ["lighthouse", "letters"],
            "creator": "tester",
            "character_version": "1.2",
            "character_book": {
                "name": "Lamp lore",
                "entries": [{"keys": ["lamp"], "content": "The lamp is a Fresnel lens.", "enabled": True,
                             "insertion_order": 0, "extensions": {"x": 1}}],
                "extensions": {},
            },
            "extensions": {
                "talkativeness": "0.8",
                "fav": True,
                "world": "Coast",
                "depth_prompt": {"prompt": "Stay in character.", "depth": 4},
            },
            "some_future_field": {"kept": [1, 2, 3]},
        },
    }


def test_v2_round_trip_keeps_unknown_extensions_and_keys() -> None:
    p = from_card(wild_v2(), "ada")
    assert p.talkativeness == 0.8 and "talkativeness" not in p.extensions
    assert p.extensions["depth_prompt"] == {"prompt": "Stay in character.", "depth": 4}
    assert p.extra == {"some_future_field": {"kept": [1, 2, 3]}}
    out = to_card_v2(p)
    assert out["spec"] == "chara_card_v2" and out["data"]["extensions"]["talkativeness"] == 0.8
    original = wild_v2()["data"]
    original["extensions"]["talkativeness"] = 0.8  # numbers out, as we write them
    assert out["data"] == original


def test_v3_round_trip_keeps_v3_fields() -> None:
    card = wild_v2()
    card["spec"], card["spec_version"] = "chara_card_v3", "3.0"
    card["data"].update(
        nickname="Ada", group_only_greetings=["Everyone inside!"], source=["https://example.org/ada"],
        creator_notes_multilingual={"zh": "测试"}, creation_date=1700000000, modification_date=1700000500,
        assets=[{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
    )
    p = from_card(card)
    assert p.id == "ada-quill" and p.nickname == "Ada" and p.assets and p.creation_date == 1700000000
    out = to_card_v3(p)
    assert out["spec"] == "chara_card_v3" and out["spec_version"] == "3.0"
    card["data"]["extensions"]["talkativeness"] = 0.8
    assert out["data"] == card["data"]


def test_v1_card_and_v3_fields_in_v2_stay_extra() -> None:
    p = from_card({"name": "小美", "description": "d", "first_mes": "hi", "talkativeness": "0.3"})
    assert p.id.startswith("persona-") and p.talkativeness == 0.3 and p.first_mes == "hi"
    card = wild_v2()
    card["data"]["nickname"] = "not a V2 field"
    p2 = from_card(card, "ada")
    assert p2.nickname == "" and p2.extra["nickname"] == "not a V2 field"
    assert to_card_v2(p2)["data"]["nickname"] == "not a V2 field"


def test_png_round_trip_v3_writes_both_chunks(tmp_path: Path) -> None:
    card = to_card_v3(from_card(wild_v2(), "ada"))
    out = tmp_path / "ada.png"
    write_card_png(card, out)
    texts = png.text_chunks(out.read_bytes(), "x")
    assert set(texts) >= {"ccv3", "chara"}
    assert json.loads(base64.b64decode(texts["chara"]))["spec"] == "chara_card_v2"
    assert read_card_file(out) == card  # ccv3 preferred
    back = from_card(read_card_file(out), "ada")
    assert back.extensions["depth_prompt"]["depth"] == 4 and back.extra["some_future_field"]["kept"] == [1, 2, 3]


def test_png_rewrite_replaces_old_card_and_keeps_image(tmp_path: Path) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    write_card_png(to_card_v2(from_card(wild_v2(), "ada")), first)
    renamed = wild_v2()
    renamed["data"]["name"] = "Ada Two"
    write_card_png(renamed, second, image=first.read_bytes())
    blob = second.read_bytes()
    assert [t for t, d in png.chunks(blob, "b") if t == b"tEXt"] == [b"tEXt"]  # one chara, old one gone
    assert read_card_file(second)["data"]["name"] == "Ada Two"
    idat = [d for t, d in png.chunks(blob, "b") if t == b"IDAT"]
    assert idat == [d for t, d in png.chunks(first.read_bytes(), "a") if t == b"IDAT"]


def _png_with_text(keyword: bytes, text: bytes) -> bytes:
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    base = png.default_image("x", size=4)
    return base[:-12] + chunk(b"tEXt", keyword + b"\0" + text) + base[-12:]


@pytest.mark.parametrize(
    ("name", "blob", "expect"),
    [
        ("notpng.png", b"GIF89a not a png", "not a PNG file"),
        ("plain.png", png.default_image("x", size=4), "no character card"),
        ("badb64.png", _png_with_text(b"chara", b"@@@not base64@@@"), "not valid base64"),
        ("trunc.png", _png_with_text(b"chara", base64.b64encode(b'{"spec": "chara_card_v2", "da')),
         "not valid JSON"),
        ("cut.png", png.default_image("x", size=4)[:-20], "truncated PNG"),
        ("crc.png", png.default_image("x", size=4)[:-5] + b"\0" + png.default_image("x", size=4)[-4:], "bad CRC"),
        ("trunc.json", b'{"spec": "chara_card_v2", "data": {"name": ', "not valid JSON"),
        ("list.json", b"[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_card_files_give_one_line_errors(tmp_path: Path, name: str, blob: bytes, expect: str) -> None:
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(UserError) as info:
        read_card_file(path)
    msg = str(info.value)
    assert expect in msg and str(path) in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("card", "expect"),
    [
        ({"spec": "chara_card_v9", "data": {}}, "spec: not a character card"),
        ({"spec": "chara_card_v2", "data": {"name": "x", "tags": "a,b"}}, "data.tags: expected a list of strings"),
        ({"spec": "chara_card_v2", "data": {"name": "x", "extensions": {"talkativeness": "loud"}}},
         "data.extensions.talkativeness"),
        ({"spec": "chara_card_v2", "data": {"name": ""}}, "data.name: a persona needs a non-empty name"),
    ],
)
def test_bad_card_content(card: dict, expect: str) -> None:
    with pytest.raises(UserError, match=expect):
        from_card(card, source="c.json")


def test_save_load_round_trip(workspace) -> None:
    p = from_card(wild_v2(), "ada")
    path = save_persona(workspace, p)
    assert path.read_text(encoding="utf-8").startswith("//")
    assert load_persona(workspace, "ada") == p
    assert [x.id for x in list_personas(workspace)] == ["ada"]


def test_persona_jsonc_errors_name_file_line_and_key(workspace) -> None:
    d = workspace.persona_dir("bad")
    d.mkdir(parents=True)
    (d / "persona.jsonc").write_text('// c\n{\n  "name": "B",\n  "talkativness": 0.4,\n}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"^personas/bad/persona.jsonc:4: talkativness: unknown key "
                                        r"\(did you mean 'talkativeness'\?\)$"):
        load_persona(workspace, "bad")
    (d / "persona.jsonc").write_text('{\n  "name": "B",\n\n  "talkativeness": 3,\n}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"^personas/bad/persona.jsonc:4: talkativeness: expected a number"):
        load_persona(workspace, "bad")
    with pytest.raises(UserError, match="no such persona"):
        load_persona(workspace, "nobody")


def test_example_personas_load() -> None:
    from persona_studio.workspace import Workspace

    ws = Workspace.open(REPO)
    personas = {p.id: p for p in list_personas(ws)}
    assert {"alice", "bob", "mei"} <= set(personas)
    for p in personas.values():
        assert isinstance(p, Persona) and p.first_mes and p.description and 0 <= p.talkativeness <= 1
        assert (ws.persona_dir(p.id) / "lore").is_dir()
    assert "_shared" not in personas and (ws.personas_dir / "_shared" / "lore" / "world.md").exists()


def test_sample_chats_carry_what_the_importers_must_handle() -> None:
    import csv

    rows = list(csv.DictReader((REPO / "personas/alice/chats/sample_wechat.csv").open(encoding="utf-8")))
    assert 40 <= len(rows) <= 60
    assert list(rows[0]) == "id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime".split(",")
    assert {"文本", "图片", "动画表情"} == {r["type_name"] for r in rows}
    assert {r["is_sender"] for r in rows} == {"0", "1"} and len({r["talker"] for r in rows}) >= 3
    text = "\n".join(r["msg"] for r in rows)
    assert any("\n" in r["msg"] for r in rows)
    for needle in ("13812345678", "@example.com", "https://", "password"):
        assert needle in text
    lines = (REPO / "personas/bob/chats/sample_whatsapp.txt").read_text(encoding="utf-8").splitlines()
    assert 15 <= len(lines) <= 30 and "<Media omitted>" in "\n".join(lines)


def test_cli_import_show_export_json(workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from persona_studio.cli import main

    w = ["-w", str(workspace.root)]
    card = wild_v2()
    card["data"]["character_book"] = None
    src = tmp_path / "ada.json"
    src.write_text(json.dumps(card), encoding="utf-8")
    assert main(["persona", "import", str(src), "--id", "ada", *w]) == 0
    assert "imported 'Ada Quill' as persona 'ada'" in capsys.readouterr().out
    assert main(["persona", "show", "ada", "--json", *w]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["talkativeness"] == 0.8 and shown["extra"] == {"some_future_field": {"kept": [1, 2, 3]}}
    assert main(["export", "card", "--persona", "ada", "--format", "v2", *w]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out == workspace.exports_dir / "ada.v2.json"
    assert json.loads(out.read_text(encoding="utf-8"))["data"]["extensions"]["fav"] is True
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\0\0")
    assert main(["persona", "import", str(bad), *w]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated PNG" in err and str(bad) in err


def test_persona_jsonc_syntax_error_names_the_line(workspace) -> None:
    d = workspace.persona_dir("broken")
    d.mkdir(parents=True)
    (d / "persona.jsonc").write_text('{\n  "name": "B",\n  "tags": [,\n}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"^personas/broken/persona.jsonc:3: syntax error"):
        load_persona(workspace, "broken")
