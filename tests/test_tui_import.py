from __future__ import annotations

import shutil
from pathlib import Path

from textual.widgets import Input, OptionList

from persona_studio.tui.app import create_app
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
        await pilot.press("ctrl+r")
        summary = app.screen.query_one("#import-summary")
        await wait_until(pilot, lambda: "done" in str(summary.render()) or "nothing" in str(summary.render()),
                         timeout=60)
        text = str(summary.render())
        assert "1 file(s) imported" in text and "samples:" in text
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
