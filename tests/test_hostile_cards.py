"""Untrusted character cards (issue 10, point 5): size limits, no control characters or terminal
escape sequences ever reaching the terminal (CLI and TUI), deep nesting refused with one line."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from persona_studio.cli import main
from persona_studio.persona import png
from persona_studio.persona.card import MAX_CARD_BYTES, MAX_CARD_DEPTH, MAX_CARD_FILE_BYTES
from persona_studio.workspace import Workspace

# What an attacker puts in a card: a window-title OSC, colour CSI, an 8-bit CSI (C1), a bell,
# a backspace "overwrite", a carriage return that hides what came before, a DEL.
EVIL = "\x1b]0;pwned\x07\x1b[31mred\x1b[0m \x9b2J\x08\x08ok\r\x7fend"
# Anything a terminal would act on: C0 but tab/newline, DEL, C1.
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def evil_card() -> dict:
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": f"Eve{EVIL}",
            "description": f"desc {EVIL}",
            "personality": EVIL,
            "scenario": EVIL,
            "first_mes": f"hi {EVIL}",
            "mes_example": EVIL,
            "creator_notes": EVIL,
            "system_prompt": EVIL,
            "post_history_instructions": EVIL,
            "alternate_greetings": [EVIL],
            "tags": [f"tag{EVIL}"],
            "creator": EVIL,
            "character_version": EVIL,
            "character_book": {"entries": [{"keys": [EVIL], "content": EVIL, "name": EVIL}]},
            "extensions": {f"key{EVIL}": EVIL, "talkativeness": "0.4"},
            f"future{EVIL}": [EVIL, {"deep": EVIL}],
        },
    }


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_escape_sequences_in_card_fields_never_reach_the_cli(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(workspace.root)
    card = tmp_path / "eve.json"
    card.write_text(json.dumps(evil_card(), ensure_ascii=False), encoding="utf-8")
    pngcard = tmp_path / "eve.png"
    pngcard.write_bytes(png.with_text_chunks(png.default_image("e"), [("chara", evil_card())], "x"))
    outputs = []
    for argv in (
        ["persona", "import", str(card), "--id", "eve", "--no-index"],
        ["persona", "import", str(pngcard), "--id", "eve2", "--no-index", "--json"],
        ["persona", "list"], ["persona", "list", "--json"],
        ["persona", "show", "eve"], ["persona", "show", "eve2", "--json"],
    ):
        rc, out, err = run(capsys, *argv, "-w", ws)
        assert rc == 0, err
        outputs.append(out + err)
    for text in outputs:
        assert not CONTROLS.search(text), repr(text)
    # The printable text survives; only the controls went.
    assert "Eve]0;pwned[31mred[0m 2Jok\nend" in outputs[4]
    # Cleaned at the door: the stored persona and an exported card carry no controls either.
    stored = (workspace.personas_dir / "eve" / "persona.jsonc").read_text(encoding="utf-8")
    assert "\\u001b" not in stored and not CONTROLS.search(stored)
    rc, out, _ = run(capsys, "export", "card", "--persona", "eve", "-o", str(tmp_path / "out.json"), "-w", ws)
    assert rc == 0 and not re.search(r"\\u00(?:[01][0-9a-f]|7f|[89][0-9a-f])", (tmp_path / "out.json").read_text())


def test_hand_edited_persona_with_escapes_is_shown_clean(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    d = workspace.personas_dir / "mal"
    d.mkdir(parents=True)
    # JSONC text can spell any control character as \u escapes.
    (d / "persona.jsonc").write_text('// copied from a stranger\n{"name": "Mal\\u001b[2J\\u009b1m",\n'
                                     ' "first_mes": "x\\u001b]52;c;ZXZpbA==\\u0007y", "tags": ["\\u001bt"]}\n')
    for argv in (["persona", "list"], ["persona", "show", "mal"], ["persona", "show", "mal", "--json"]):
        rc, out, err = run(capsys, *argv, "-w", str(workspace.root))
        assert rc == 0 and not CONTROLS.search(out + err), repr(out + err)
        assert "\\u001b" not in out and "\\u009b" not in out


async def test_escape_sequences_in_a_card_never_reach_the_tui(workspace: Workspace, tmp_path: Path) -> None:
    from persona_studio.tui.app import create_app
    from tests.tui_helpers import wait_until

    card = tmp_path / "eve.json"
    card.write_text(json.dumps(evil_card(), ensure_ascii=False), encoding="utf-8")
    assert main(["persona", "import", str(card), "--id", "eve", "--no-index", "-w", str(workspace.root)]) == 0
    app = create_app(workspace.root)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        await wait_until(pilot, lambda: app.current_mode == "party")
        # What the compositor hands the terminal, line by line.
        rows = ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]
        screen = "\n".join(rows)
        assert "Eve]0;pwned" in screen  # the member list shows the (cleaned) name
        assert not CONTROLS.search(screen), repr(screen)


def deep(n: int) -> str:
    return '{"spec": "chara_card_v2", "data": {"name": "x", "extensions": {"a": ' + "[" * n + "]" * n + "}}}"


def test_deep_card_json_and_png_are_one_line_exit_2(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jcard = tmp_path / "deep.json"
    jcard.write_text(deep(100_000))
    pcard = tmp_path / "deep.png"
    pcard.write_bytes(png.with_text_chunks(png.default_image("d"), [], "x")[:-12] + png._chunk(
        b"tEXt", b"chara\0" + base64.b64encode(deep(100_000).encode())) + png._chunk(b"IEND", b""))
    for path in (jcard, pcard):
        rc, out, err = run(capsys, "persona", "import", str(path), "-w", str(workspace.root))
        assert rc == 2 and out == ""
        assert len(err.strip().splitlines()) == 1
        assert f"JSON nested deeper than {MAX_CARD_DEPTH} levels" in err and str(path) in err
    assert workspace.persona_ids() == []
    # The limit is the depth persona.jsonc (pyjson5) reads back: a card just within it round-trips.
    ok = tmp_path / "ok.json"
    ok.write_text(deep(MAX_CARD_DEPTH - 3))
    assert run(capsys, "persona", "import", str(ok), "--id", "ok", "-w", str(workspace.root))[0] == 0
    assert run(capsys, "persona", "show", "ok", "-w", str(workspace.root))[0] == 0


def test_oversized_cards_and_persona_files_are_refused_before_reading(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(workspace.root)
    # A 280 MB card (sparse: the size is real, the disk blocks are not).
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(280 << 20)
    rc, _, err = run(capsys, "persona", "import", str(huge), "-w", ws)
    assert rc == 2 and err.strip() == (f"persona-studio: error: {huge}: too big for a character card "
                                       f"(280.0 MB; the limit is {MAX_CARD_FILE_BYTES >> 20}.0 MB)")
    # A PNG under the file limit whose card text is over the JSON limit.
    text = json.dumps({"name": "Big", "description": "x" * (MAX_CARD_BYTES + 10)})
    big_png = tmp_path / "big.png"
    big_png.write_bytes(png.with_text_chunks(png.default_image("b"), [("chara", json.loads(text))], "x"))
    rc, _, err = run(capsys, "persona", "import", str(big_png), "-w", ws)
    assert rc == 2 and "too big for a character card" in err and len(err.strip().splitlines()) == 1
    # A persona.jsonc dropped into the workspace: `persona list` fails fast, one line, no 80 s parse.
    d = workspace.personas_dir / "fat"
    d.mkdir(parents=True)
    with open(d / "persona.jsonc", "wb") as f:
        f.truncate(280 << 20)
    rc, _, err = run(capsys, "persona", "list", "-w", ws)
    assert rc == 2 and err.strip() == ("persona-studio: error: personas/fat/persona.jsonc: too big for a "
                                       f"character card (280.0 MB; the limit is {MAX_CARD_BYTES >> 20}.0 MB)")
    assert workspace.persona_ids() == ["fat"]


def test_many_compressed_text_chunks_are_not_all_inflated(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 500 KB PNG whose 40 zTXt chunks would each inflate to 12 MB (480 MB in all): only
    the card's own chunk is read."""
    import tracemalloc
    import zlib

    bomb = zlib.compress(b"\0" * (12 << 20), 9)
    image = png.with_text_chunks(png.default_image("z"), [("chara", {"name": "Zed"})], "x")
    extra = b"".join(png._chunk(b"zTXt", f"k{i}".encode() + b"\0\0" + bomb) for i in range(40))
    path = tmp_path / "bomb.png"
    path.write_bytes(image[:33] + extra + image[33:])  # after IHDR
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        rc, out, err = run(capsys, "persona", "import", str(path), "--json", "-w", str(workspace.root))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 0 and json.loads(out)["name"] == "Zed", err
    assert peak < 64 << 20, f"peak {peak >> 20} MB"


async def test_chat_text_with_escape_sequences_is_shown_clean_in_review(workspace: Workspace) -> None:
    """Chat exports are untrusted too: a message's escape sequences never reach the terminal
    from the Review screen (table, detail, blocked-word hits, the edit dialog)."""
    from textual.widgets import DataTable, TextArea

    from persona_studio.tui.app import create_app
    from tests.test_review import add_sample
    from tests.tui_helpers import wait_until

    with workspace.store() as store:
        add_sample(store, "alice", "h1", f"reply {EVIL}")
        with store.tx() as db:
            db.execute("INSERT INTO dataset_runs(id, persona_id) VALUES (1, 'alice')")
            db.execute("INSERT INTO blocked_hits(persona_id, run_id, word, text) VALUES ('alice', 1, 'darn', ?)",
                       (f"darn {EVIL}",))
    app = create_app(workspace.root)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("2")
        table = app.screen.query_one("#review-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1)
        screens = []
        for tab in ("tab-samples", "tab-blocked"):
            app.screen.query_one("#review-tabs").active = tab
            await pilot.pause()
            screens.append("\n".join("".join(seg.text for seg in strip)
                                     for strip in app.screen._compositor.render_strips()))
        table.focus()
        await pilot.press("e")
        await wait_until(pilot, lambda: bool(app.screen.query(TextArea)))
        screens.append("\n".join("".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()))
        assert "reply ]0;pwned" in screens[0] and "darn ]0;pwned" in screens[1]
        for screen in screens:
            assert not CONTROLS.search(screen), repr(screen)


def test_speaker_names_with_escape_sequences_print_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chat = tmp_path / "chat.txt"
    talk = "".join(f"12/31/23, 9:{i:02d} PM - Bo: an ordinary line of talk, number {i}\n" for i in range(50))
    chat.write_text(f"12/31/23, 8:41 PM - Eve\x1b]0;x\x07: hi\n{talk}", encoding="utf-8")
    assert main(["speakers", str(chat)]) == 0
    out = capsys.readouterr().out
    assert "Eve]0;x" in out and not CONTROLS.search(out), repr(out)


def test_json_output_escapes_c1_controls_a_terminal_would_obey(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """json.dumps(ensure_ascii=False) escapes C0 but writes DEL and C1 (U+009B is an 8-bit CSI) raw:
    every --json command prints through termsafe.json_text, which escapes them too."""
    from persona_studio.termsafe import json_text

    evil = {"名字": "Zoë\x9b2J\x7f\x85 and\x1b[31m red"}
    text = json_text(evil)
    assert not CONTROLS.search(text) and "名字" in text and "Zoë" in text
    assert json.loads(text) == evil  # the same value, only spelled safely
    assert json_text([1, {"a": "\x9f"}], indent=2) == '[\n  1,\n  {\n    "a": "\\u009f"\n  }\n]'

    chat = tmp_path / "chat.txt"
    talk = "".join(f"12/31/23, 9:{i:02d} PM - Bo: an ordinary line of talk, number {i}\n" for i in range(50))
    chat.write_text(f"12/31/23, 8:41 PM - Eve\x9b2J: hi\n{talk}", encoding="utf-8")
    assert main(["speakers", str(chat), "--json"]) == 0
    out = capsys.readouterr().out
    assert not CONTROLS.search(out), repr(out)
    assert ["Eve\x9b2J", 1] in json.loads(out), out  # the name itself is kept, escaped
