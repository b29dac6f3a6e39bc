from __future__ import annotations

import sys
from pathlib import Path

from persona_studio.tui.app import create_app
from persona_studio.tui.widgets.status import StatusLine
from tests.test_clean_pipeline import add_persona
from tests.tui_helpers import screen_text, wait_until

STAGES = ["import", "review", "train", "chat", "party", "export"]


async def test_number_keys_reach_every_stage(workspace) -> None:
    app = create_app(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.current_mode == "import")
        for key, mode in zip("123456", STAGES, strict=True):
            await pilot.press(key)
            await wait_until(pilot, lambda m=mode: app.current_mode == m)
            assert type(app.screen).__name__.lower().startswith(mode.rstrip("_"))
        for key, mode in (("1", "import"), ("5", "party"), ("2", "review"), ("4", "chat"), ("3", "train")):
            await pilot.press(key)  # no stage grabs the keyboard on arrival
            await wait_until(pilot, lambda m=mode: app.current_mode == m)


async def test_command_palette_switches_stage(workspace) -> None:
    app = create_app(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.current_mode == "import")
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Go to Tea party")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.current_mode == "party")


async def test_status_line_shows_workspace_model_engine_jobs(workspace) -> None:
    app = create_app(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.current_mode == "import")
        text = str(app.screen.query_one(StatusLine).render())
        assert workspace.root.name in text
        assert "smollm2-135m-instruct" in text and "engine not started" in text and "jobs 0 running" in text
        app.set_engine_state("starting 40%")
        await pilot.pause()
        assert "engine starting 40%" in str(app.screen.query_one(StatusLine).render())


async def test_stage_bar_names_every_stage_and_the_footer_starts_with_the_stages_keys(workspace) -> None:
    from textual.widgets import Footer
    from textual.widgets._footer import FooterKey

    from persona_studio.tui.screens.base import STAGES as ALL_STAGES
    from persona_studio.tui.widgets.stagebar import StageBar

    app = create_app(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        for key, mode in (("1", "import"), ("3", "train"), ("4", "chat")):
            await pilot.press(key)
            await wait_until(pilot, lambda m=mode: app.current_mode == m)
            await pilot.pause()
            bar = app.screen.query_one(StageBar)
            text = bar.render_bar().plain
            assert bar.region.width <= 80 and len(text) <= bar.region.width - 2  # nothing cut off at 80x24
            for _mode, k, title, _ in ALL_STAGES:
                assert f"{k} {title}" in text
            current = next(title for m, _, title, _ in ALL_STAGES if m == mode)
            assert f"▶{key} {current}" in text and text.count("▶") == 1
            footer = app.screen.query_one(Footer)
            shown = [fk.key for fk in footer.query(FooterKey)]
            own = [b.key for b in type(app.screen).BINDINGS if getattr(b, "show", True)]
            assert shown[: len(own)] == own, (shown, own)  # the stage's own keys come first
            assert "ctrl+q" in shown and "1" not in shown  # stage keys live in the stage bar
        keys = {b.key for (_, b, _, _) in app.screen.active_bindings.values()}
        assert {"1", "2", "3", "4", "5", "6", "ctrl+q"} <= keys  # still bound, only not in the footer


async def test_error_panel_exits_2_with_every_quit_key(tmp_path: Path) -> None:
    for key in ("q", "escape", "ctrl+q", "ctrl+c"):
        app = create_app(tmp_path / "nowhere")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press(key)
            await pilot.pause()
        assert app.return_code == 2, key


async def test_broken_settings_show_an_error_panel_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "settings.jsonc").write_text('{\n  "train_sft_args": {"lora_rank": 7}\n}')
    app = create_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(pilot)
        assert "cannot open this workspace" in text
        assert "settings.jsonc:2: train_sft_args.lora_rank: must be one of" in text
        await pilot.press("q")
    assert app.return_code == 2
    assert not (tmp_path / ".studio").exists()


async def test_missing_workspace_shows_error_panel(tmp_path: Path) -> None:
    app = create_app(tmp_path / "nowhere")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "workspace does not exist" in screen_text(pilot)


async def test_no_workspace_here_offers_to_create_one_and_opens_it(tmp_path: Path) -> None:
    from persona_studio import settings

    empty = tmp_path / "new place"
    empty.mkdir()
    app = create_app(empty)
    async with app.run_test(size=(90, 28)) as pilot:
        await pilot.pause()
        text = screen_text(pilot)
        assert "no settings.jsonc here" in text and "Press i to create a workspace" in text
        assert not (empty / "settings.jsonc").exists()  # nothing until asked
        await pilot.press("i")
        await wait_until(pilot, lambda: app.current_mode == "import")
        assert (empty / "settings.jsonc").read_text() == settings.default_text() and (empty / "personas").is_dir()
        assert app.workspace is not None and app.workspace.root == empty.resolve()
        await pilot.press("2")
        await wait_until(pilot, lambda: app.current_mode == "review")
        await pilot.press("ctrl+q")
    assert app.return_code == 0  # the studio opened: a normal exit


async def test_a_broken_workspace_is_not_offered_for_creation(tmp_path: Path) -> None:
    (tmp_path / "settings.jsonc").write_text("{ nope")
    before = (tmp_path / "settings.jsonc").read_text()
    app = create_app(tmp_path)
    async with app.run_test(size=(90, 28)) as pilot:
        await pilot.pause()
        assert "Press i" not in screen_text(pilot)
        await pilot.press("i")  # not a key here: the broken file stays as it is
        await pilot.pause()
        assert app.workspace is None
        await pilot.press("q")
    assert app.return_code == 2 and (tmp_path / "settings.jsonc").read_text() == before


async def test_idle_stages_do_not_animate(workspace) -> None:
    """Nothing on an idle stage redraws itself on a timer: an indeterminate progress bar says
    "busy" when nothing is, and its 15 redraws a second slowed the studio's start (first
    paint, switch to Chat, first reply) on a 2-core box."""
    from persona_studio.tui.screens.base import STAGES as ALL_STAGES

    app = create_app(workspace.root)
    async with app.run_test(size=(100, 30)) as pilot:
        for mode, key, _title, _ in ALL_STAGES:
            await pilot.press(key)
            await wait_until(pilot, lambda m=mode: app.current_mode == m)
            await pilot.pause()
            ticking = [w for w in app.screen.query("*") if w.auto_refresh is not None]
            assert ticking == [], f"{mode}: {ticking}"


def test_shell_does_not_import_heavy_libraries(workspace) -> None:
    """Visiting every stage must not import torch & co. on the UI thread (checked in a fresh process)."""
    import subprocess

    code = f"""
import asyncio, sys
from persona_studio.tui.app import create_app
async def main():
    app = create_app({str(workspace.root)!r})
    async with app.run_test(size=(80, 24)) as pilot:
        for key in "123456":
            await pilot.press(key)
            await pilot.pause()
asyncio.run(main())
print(sorted(m for m in ("torch", "transformers", "vllm", "chromadb", "peft") if m in sys.modules))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


async def test_personas_added_meanwhile_appear_when_a_stage_is_revisited(workspace) -> None:
    from textual.widgets import Select

    add_persona(workspace, "ann")
    app = create_app(workspace.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await wait_until(pilot, lambda: app.current_mode == "train")
        sel = app.screen.query_one("#train-persona", Select)
        assert sel.value == "ann"
        add_persona(workspace, "zed")
        await pilot.press("2", "3")
        await wait_until(pilot, lambda: app.current_mode == "train")
        assert [v for _, v in sel._options if isinstance(v, str)] == ["ann", "zed"]
        assert sel.value == "ann"  # the choice is kept
