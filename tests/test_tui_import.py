from __future__ import annotations

import shutil
from pathlib import Path

from textual.widgets import Input, OptionList

from persona_studio.tui.app import create_app
from persona_studio.workspace import Workspace
from tests.tui_helpers import wait_until

REPO = Path(__file__).resolve().parents[1]


def repo_workspace(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "personas", tmp_path / "personas")
    shutil.copy(REPO / "settings.jsonc", tmp_path / "settings.jsonc")
    return tmp_path


async def test_import_screen_scans_picks_me_and_builds_samples(tmp_path: Path) -> None:
    ws = repo_workspace(tmp_path)
    app = create_app(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.current_mode == "import")
        app.screen.query_one("#import-files", Input).value = "personas/alice/chats/sample_wechat.csv"
        await pilot.press("ctrl+o")
        speakers = app.screen.query_one("#import-speakers", OptionList)
        await wait_until(pilot, lambda: speakers.option_count >= 2, timeout=30)
        assert "wechat" in str(app.screen.query_one("#import-format").render())
        ids = [speakers.get_option_at_index(i).id for i in range(speakers.option_count)]
        speakers.highlighted = ids.index("me")
        bar = app.screen.query_one("#import-progress")
        assert not bar.display  # no progress bar before there is work
        await pilot.press("ctrl+r")
        assert bar.display
        summary = app.screen.query_one("#import-summary")
        await wait_until(pilot, lambda: "done" in str(summary.render()) or "nothing" in str(summary.render()),
                         timeout=60)
        text = str(summary.render())
        assert "1 file(s) imported" in text and "samples:" in text
        assert bar.percentage == 1 and all(w.auto_refresh is None for w in bar.query("*"))
    with app.workspace.store() as store:
        n = store.query("SELECT count(*) FROM samples WHERE persona_id='alice'")[0][0]
        hits = store.query("SELECT count(*) FROM blocked_hits WHERE persona_id='alice'")[0][0]
    assert n > 0 and hits >= 1


async def test_import_screen_shows_bad_file_error(tmp_path: Path) -> None:
    ws = repo_workspace(tmp_path)
    (ws / "junk.bin").write_bytes(bytes(range(256)) * 10)
    app = create_app(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        app.screen.query_one("#import-files", Input).value = "junk.bin"
        await pilot.press("ctrl+o")
        box = app.screen.query_one("#import-format")
        await wait_until(pilot, lambda: "junk.bin" in str(box.render()), timeout=30)
        assert "binary" in str(box.render()) or "unknown format" in str(box.render())
        # ctrl+r then says there is nothing to import (not "which persona?"), and imports nothing
        await pilot.press("ctrl+r")
        summary = app.screen.query_one("#import-summary")
        await wait_until(pilot, lambda: "nothing to import" in str(summary.render()))
        assert "junk.bin" in str(summary.render()) and imports(ws) == []


def imports(ws_root: Path) -> list[tuple]:
    from persona_studio.workspace import Workspace

    with Workspace.open(ws_root).store() as store:
        return [tuple(r) for r in store.query("SELECT id, persona_id, me FROM imports ORDER BY id")]


async def test_enter_picks_me_and_does_not_import(tmp_path: Path) -> None:
    from textual.widgets import Select

    ws = repo_workspace(tmp_path)
    app = create_app(ws)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.current_mode == "import")
        app.screen.query_one("#import-files", Input).value = "personas/bob/chats/" + next(
            p.name for p in (ws / "personas" / "bob" / "chats").iterdir())
        await pilot.press("ctrl+o")
        speakers = app.screen.query_one("#import-speakers", OptionList)
        await wait_until(pilot, lambda: speakers.option_count >= 2, timeout=30)
        # the file lives in personas/bob/: bob is the target without asking
        assert app.screen.query_one("#import-persona", Select).value == "bob"
        ids = [speakers.get_option_at_index(i).id for i in range(speakers.option_count)]
        speakers.focus()
        speakers.highlighted = len(ids) - 1
        await pilot.press("enter")
        await wait_until(pilot, lambda: ids[-1] in str(app.screen.query_one("#import-me").render()))
        speakers.focus()
        speakers.highlighted = 0  # moving on afterwards does not change "me"
        await pilot.pause(0.3)
        assert app.screen.me == ids[-1]
        assert imports(ws) == []  # enter never imports


async def test_persona_is_asked_for_then_new_persona_and_undo(tmp_path: Path) -> None:
    from textual.widgets import Select

    from persona_studio.persona.card import load_persona

    ws = repo_workspace(tmp_path)
    (ws / "exports").mkdir()
    chat = ws / "exports" / "chat.txt"
    chat.write_text("12/31/23, 9:41 PM - Rosa Diaz: are you coming?\n12/31/23, 9:42 PM - Jake: yes, with snacks\n"
                    "12/31/23, 9:43 PM - Rosa Diaz: <Media omitted>\n12/31/23, 9:44 PM - Jake: see you soon\n",
                    encoding="utf-8")
    app = create_app(ws)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.current_mode == "import")
        app.screen.query_one("#import-files", Input).value = "exports/chat.txt"
        await pilot.press("ctrl+o")
        speakers = app.screen.query_one("#import-speakers", OptionList)
        await wait_until(pilot, lambda: speakers.option_count == 2, timeout=30)
        select = app.screen.query_one("#import-persona", Select)
        assert not isinstance(select.value, str)  # not in a persona's folder, several personas: ask
        await pilot.press("ctrl+r")
        summary = app.screen.query_one("#import-summary")
        await wait_until(pilot, lambda: "which persona?" in str(summary.render()))
        assert imports(ws) == []
        select.value = "new persona…"
        speakers.focus()
        speakers.highlighted = [speakers.get_option_at_index(i).id for i in range(2)].index("Jake")
        await pilot.press("enter")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "done" in str(summary.render()) or "nothing" in str(summary.render()),
                         timeout=60)
        assert "1 file(s) imported" in str(summary.render())
        assert imports(ws) == [(1, "jake", "Jake")]
        assert load_persona(app.workspace, "jake").name == "Jake"
        await wait_until(pilot, lambda: select.value == "jake")

        await pilot.press("ctrl+z")
        await wait_until(pilot, lambda: "press ctrl+z again" in str(summary.render()))
        assert len(imports(ws)) == 1  # one press only asks
        await pilot.press("ctrl+z")
        await wait_until(pilot, lambda: "undid import 1" in str(summary.render()), timeout=60)
        assert imports(ws) == []
    with app.workspace.store() as store:
        assert store.query("SELECT count(*) FROM samples WHERE persona_id = 'jake'")[0][0] == 0


async def test_tab_completes_the_path(tmp_path: Path) -> None:
    ws = repo_workspace(tmp_path)
    app = create_app(ws)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.current_mode == "import")
        box = app.screen.query_one("#import-files", Input)
        box.focus()
        await pilot.press(*"personas/ali")
        await wait_until(pilot, lambda: box._suggestion == "personas/alice/")
        await pilot.press("tab")
        assert box.value == "personas/alice/" and app.focused is box
        await pilot.press(*"ch")
        await wait_until(pilot, lambda: box._suggestion == "personas/alice/chats/")
        await pilot.press("tab")
        assert box.value == "personas/alice/chats/"
        await wait_until(pilot, lambda: box._suggestion.startswith("personas/alice/chats/sample"))
        await pilot.press("tab")
        assert box.value.endswith(".csv")
        await pilot.pause(0.2)
        await pilot.press("tab")  # nothing left to complete: tab moves on
        assert app.focused is not box


async def test_tab_completes_names_with_spaces_so_they_scan(tmp_path: Path) -> None:
    ws = repo_workspace(tmp_path)
    (ws / "exports").mkdir()
    (ws / "exports" / "WhatsApp Chat with Rosa.txt").write_text(
        "12/31/23, 9:41 PM - Rosa: hi\n12/31/23, 9:42 PM - Jake: hey\n", encoding="utf-8")
    app = create_app(ws)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.current_mode == "import")
        box = app.screen.query_one("#import-files", Input)
        box.focus()
        await pilot.press(*"exports/Wha")
        await wait_until(pilot, lambda: box._suggestion.endswith(".txt"))
        await pilot.press("tab")
        assert box.value == "exports/WhatsApp\\ Chat\\ with\\ Rosa.txt"
        box.value = '"exports/WhatsApp Ch'
        box.cursor_position = len(box.value)
        await wait_until(pilot, lambda: box._suggestion.endswith('.txt"'))
        await pilot.press("tab", "enter")  # enter in the path box scans
        speakers = app.screen.query_one("#import-speakers", OptionList)
        await wait_until(pilot, lambda: speakers.option_count == 2, timeout=30)
        assert {speakers.get_option_at_index(i).id for i in range(2)} == {"Rosa", "Jake"}


async def test_review_work_that_cannot_be_carried_is_dropped_only_on_ctrl_f(tmp_path: Path) -> None:
    """The TUI's `make-dataset --force`: a re-import whose samples would drop review work refuses
    and says so; ctrl+f (only then) re-makes them and says what was dropped."""
    from textual.widgets import Select

    from persona_studio.cli import main
    from tests.test_clean_pipeline import add_persona, wechat_csv
    from tests.test_review_work import exchange, samples, settings

    ws = Workspace.init(tmp_path / "ws")
    add_persona(ws, "alice")
    chat = wechat_csv(tmp_path / "ws" / "chat.csv", exchange(1, 0, 3, "a") + exchange(1, 14, 2, "d"))
    assert main(["import", str(chat), "--persona", "alice", "--me", "me", "-w", str(ws.root)]) == 0
    settings(ws, 5.0)
    assert main(["make-dataset", "--persona", "alice", "-w", str(ws.root)]) == 0
    accepted = next(s.id for s in samples(ws) if s.turns[0]["content"] == "a question 0")
    assert main(["-w", str(ws.root), "review", "--persona", "alice", "accept", str(accepted)]) == 0
    settings(ws, 10.0)  # "a" (accepted) and "d" become one sample: the accept cannot be carried

    app = create_app(ws.root)
    async with app.run_test(size=(110, 32)) as pilot:
        await wait_until(pilot, lambda: app.current_mode == "import")
        summary = app.screen.query_one("#import-summary")
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: "nothing to force" in str(summary.render()))
        app.screen.query_one("#import-files", Input).value = "chat.csv"
        await pilot.press("ctrl+o")
        speakers = app.screen.query_one("#import-speakers", OptionList)
        await wait_until(pilot, lambda: speakers.option_count >= 2, timeout=30)
        app.screen.query_one("#import-persona", Select).value = "alice"
        speakers.highlighted = [speakers.get_option_at_index(i).id for i in range(speakers.option_count)].index("me")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "press ctrl+f" in str(summary.render()), timeout=60)
        assert "would drop the review work on 1 sample(s)" in str(summary.render())
        assert any(s.id == accepted and s.status == "accepted" for s in samples(ws))  # nothing changed yet
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: "done" in str(summary.render()), timeout=60)
        assert "dropped the review work on 1 sample(s)" in str(summary.render())
    merged = next(s for s in samples(ws) if s.turns[0]["content"] == "a question 0")
    assert len(merged.turns) == 10 and merged.status == "pending"


async def test_typing_on_the_import_stage_goes_to_the_path_digits_still_switch(tmp_path: Path) -> None:
    ws = repo_workspace(tmp_path)
    app = create_app(ws)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.current_mode == "import")
        box = app.screen.query_one("#import-files", Input)
        assert app.screen.focused is None  # nothing focused: digits switch stage
        await pilot.press("p", "e", "r", "s")
        # the keys typed into nothing reach the path, in order (the focus selects nothing to overwrite)
        await wait_until(pilot, lambda: app.screen.focused is box and box.value == "pers")
        await pilot.press("tab")  # and the path completes as usual
        assert box.value == "personas/"
        await pilot.press("escape", "2")
        await wait_until(pilot, lambda: app.current_mode == "review")


async def test_me_is_suggested_for_the_persona_and_a_pick_replaces_it(tmp_path: Path) -> None:
    """ctrl+r straight after a scan took whoever was listed first (the most messages): for a
    persona named like one speaker, that imported the other person as "me"."""
    from persona_studio.persona.card import Persona, save_persona

    root = repo_workspace(tmp_path)
    save_persona(Workspace.open(root), Persona(id="jake", name="Jake Peralta", description="d"))
    (root / "chat.txt").write_text(
        "12/31/23, 9:41 PM - Rosa Diaz: are you coming?\n12/31/23, 9:42 PM - Rosa Diaz: hello?\n"
        "12/31/23, 9:43 PM - Jake Peralta: yes, with snacks\n", encoding="utf-8")
    app = create_app(root)
    async with app.run_test(size=(100, 30)) as pilot:
        from textual.widgets import Select

        app.screen.query_one("#import-persona", Select).value = "jake"
        app.screen.query_one("#import-files", Input).value = "chat.txt"
        await pilot.press("ctrl+o")
        speakers = app.screen.query_one("#import-speakers", OptionList)
        await wait_until(pilot, lambda: speakers.option_count == 2, timeout=30)
        await wait_until(pilot, lambda: app.screen.me == "Jake Peralta")
        assert speakers.get_option_at_index(0).id == "Rosa Diaz"  # listed first, not taken
        assert speakers.get_option_at_index(speakers.highlighted).id == "Jake Peralta"
        assert "suggested: named like persona jake" in str(app.screen.query_one("#import-me").render())
        speakers.focus()
        speakers.highlighted = 0
        await pilot.press("enter")  # a pick replaces the suggestion and stays
        await wait_until(pilot, lambda: app.screen.me == "Rosa Diaz")
        app.screen.query_one("#import-persona", Select).value = "alice"
        await pilot.pause(0.3)
        assert app.screen.me == "Rosa Diaz" and "suggested" not in str(app.screen.query_one("#import-me").render())
        app.screen.query_one("#import-persona", Select).value = "jake"
        speakers.focus()
        speakers.highlighted = 1
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen.me == "Jake Peralta")
        await pilot.press("ctrl+r")
        summary = app.screen.query_one("#import-summary")
        await wait_until(pilot, lambda: "done" in str(summary.render()), timeout=60)
    assert imports(root) == [(1, "jake", "Jake Peralta")]
