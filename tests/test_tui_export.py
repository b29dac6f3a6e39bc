"""The Export screen, driven from the keyboard at 80×24 with a real workspace, adapter and exports."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from persona_studio.tui.app import create_app
from tests.export_helpers import add_persona, install_adapter, model_workspace
from tests.tui_helpers import wait_until


@pytest.fixture
def ws(tmp_path: Path, tiny_model: Path):
    ws = model_workspace(tmp_path / "ws", tiny_model)
    add_persona(ws, "alice")
    add_persona(ws, "bob")
    install_adapter(ws, "alice", tiny_model)
    return ws


def _result(app) -> str:
    return str(app.screen.query_one("#export-result").render())


async def _open_export(pilot) -> None:
    app = pilot.app
    await wait_until(pilot, lambda: app.current_mode == "import")
    await pilot.press("6")
    await wait_until(pilot, lambda: app.current_mode == "export" and app.screen.query("#export-kind"))
    await pilot.pause()


async def _pick_kind(pilot, label: str) -> None:
    """Open the kind list with enter, arrow down to `label`, enter (keyboard only)."""
    from textual.widgets import Select

    from persona_studio.export.kinds import available_kinds

    kind = pilot.app.screen.query_one("#export-kind", Select)
    assert pilot.app.focused is kind and kind.value == "model"
    index = [lab for lab, _ in available_kinds()].index(label)
    await pilot.press("enter")
    await pilot.pause()
    await pilot.press(*["down"] * index, "enter")
    await wait_until(pilot, lambda: kind.value == available_kinds()[index][1])


async def test_adapter_zip_export_from_the_keyboard(ws) -> None:
    app = create_app(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_export(pilot)
        assert app.screen.query_one("#export-persona").value == "alice"
        await pilot.press("tab")  # persona -> kind
        await _pick_kind(pilot, "LoRA adapter (.zip)")
        out = app.screen.query_one("#export-out")
        assert out.value == ".studio/exports/alice-adapter-v0001.zip"
        await pilot.press("tab", "tab")  # kind -> output path -> Export button
        assert app.focused.id == "export-run"
        await pilot.press("enter")
        target = ws.exports_dir / "alice-adapter-v0001.zip"
        await wait_until(pilot, lambda: "done:" in _result(app), timeout=30)
        assert zipfile.is_zipfile(target)
        assert "alice-v0001/adapter_model.safetensors" in zipfile.ZipFile(target).namelist()
        assert app.screen.query_one("#export-progress").percentage == 1.0

        # again: refused (one line in the pane), the file stays as it was
        before = target.read_bytes()
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "error:" in _result(app), timeout=30)
        assert "already exists" in _result(app) and target.read_bytes() == before


async def test_merged_model_with_progress_and_error_for_a_persona_without_adapter(ws) -> None:
    from textual.widgets import Select

    app = create_app(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_export(pilot)
        assert app.screen.query_one("#export-kind", Select).value == "model"
        assert app.screen.query_one("#export-out").value == ".studio/exports/alice-merged-v0001"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "done:" in _result(app), timeout=120)
        assert (ws.exports_dir / "alice-merged-v0001" / "model.safetensors").is_file()
        assert app.screen.query_one("#export-progress").percentage == 1.0

        app.screen.query_one("#export-persona", Select).value = "bob"
        await pilot.pause()
        assert app.screen.query_one("#export-out").value == ".studio/exports/bob-merged"
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "error:" in _result(app), timeout=30)
        assert "persona 'bob': has no trained adapter" in _result(app)
        assert not (ws.exports_dir / "bob-merged").exists()


async def test_serve_command_script(ws) -> None:
    from textual.widgets import Input

    app = create_app(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_export(pilot)
        await pilot.press("tab")
        await _pick_kind(pilot, "vllm serve command (script)")
        box = app.screen.query_one("#export-out", Input)
        assert box.value == ".studio/exports/serve.sh"
        box.value = "serve-all.sh"  # a path of one's own, relative to the workspace
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "done:" in _result(app), timeout=30)
        script = (ws.root / "serve-all.sh").read_text()
        assert "--lora-modules alice-v0001=" in script and "# skipped bob" in script
        assert "--enable-lora" in _result(app)


async def test_personas_added_elsewhere_appear_on_return(ws) -> None:
    from textual.widgets import Select

    app = create_app(ws.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_export(pilot)
        await pilot.press("1")
        await wait_until(pilot, lambda: app.current_mode == "import")
        add_persona(ws, "carol")
        await pilot.press("6")
        await wait_until(pilot, lambda: app.current_mode == "export")
        await pilot.pause()
        sel = app.screen.query_one("#export-persona", Select)
        assert sel.value == "alice"  # the choice survives the round trip
        sel.value = "carol"  # raises if carol is not an option
        await pilot.pause()
        assert app.screen.query_one("#export-out").value == ".studio/exports/carol-merged"
