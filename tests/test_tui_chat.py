"""Chat and Tea-party screens on a real engine (transformers backend, tiny model, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persona_studio.tui.app import create_app
from persona_studio.tui.widgets.messages import MessageView
from tests.tui_helpers import wait_until

REPO = Path(__file__).resolve().parents[1]


def short_personas(root: Path) -> None:
    # The tiny model's tokenizer knows 8 lines of text: keep cards short so prompts fit 1024 tokens.
    for pid, name in (("alice", "Alice"), ("bob", "Bob"), ("mei", "Mei")):
        (root / "personas" / pid).mkdir(parents=True)
        (root / "personas" / pid / "persona.jsonc").write_text(json.dumps({
            "name": name, "description": f"{name} likes tea.", "first_mes": f"Hello, I am {name}.",
        }))


@pytest.fixture
def chat_ws(tmp_path: Path, tiny_model: Path) -> Path:
    short_personas(tmp_path)
    (tmp_path / "settings.jsonc").write_text(json.dumps({
        "model": {"name_or_path": str(tiny_model)},
        "engine": {"backend": "transformers"},
        "infer_args": {"max_new_tokens": 8, "temperature": 0.0},
        "vllm_args": {"max_model_len": 1024},
        "rag_args": {"enable": False},
        "party": {"auto_delay_s": 0.2},
    }))
    return tmp_path


def heads(app) -> list[str]:
    return [v._head for v in app.screen.query(MessageView)]


async def idle(pilot, app, n_views: int, timeout: float = 120) -> None:
    await wait_until(pilot, lambda: app.engine is not None and not app.screen.busy
                     and len(app.screen.query(MessageView)) >= n_views, timeout=timeout)


@pytest.mark.slow
async def test_chat_streams_swipes_edits_and_rewinds(chat_ws: Path) -> None:
    app = create_app(chat_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "chat")
        assert "no adapter: base model" in str(app.screen.query_one("#conv-info").render())
        await pilot.press("i", *"hello alice", "enter")
        await idle(pilot, app, 3)  # greeting, user line, reply
        h = heads(app)
        assert h[0].endswith("greeting") and h[1].startswith("You")
        assert "base model (no adapter)" in h[2] and "tok" in h[2]
        screen = app.screen
        chat_id = screen.chat_id
        reply = screen.ui_tree.path(chat_id)[-1]
        assert reply.role == "assistant" and reply.speaker == "alice"

        await pilot.press("escape", "ctrl+r")  # regenerate: a second swipe beside the first
        await wait_until(pilot, lambda: "swipe 2/2" in " ".join(heads(app)) and not screen.busy, timeout=120)
        await pilot.press("left_square_bracket")  # back to the first swipe
        await wait_until(pilot, lambda: "swipe 1/2" in " ".join(heads(app)))
        assert screen.ui_tree.path(chat_id)[-1].id == reply.id

        await pilot.press("e")  # edit the persona's reply -> a preference pair
        await wait_until(pilot, lambda: app.screen is not screen)
        app.screen.query_one("TextArea").text = "Welcome in, dear."
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "edited" in heads(app)[-1])
        prefs = screen.ui_tree.preferences("alice")
        assert prefs and prefs[-1]["chosen"] == "Welcome in, dear." and prefs[-1]["rejected"] == reply.content

        views = list(screen.query(MessageView))
        views[1].focus()  # the user's line: rewind there, then talk again -> a new branch
        await pilot.press("b")
        await wait_until(pilot, lambda: len(screen.query(MessageView)) == 2)
        await pilot.press("i", *"another question", "enter")
        await idle(pilot, app, 4)
        # the old replies stay in the tree beside the new branch
        kids = screen.ui_tree.children(chat_id, views[1].msg.id)
        assert [k.role for k in kids] == ["assistant", "assistant", "user"]
        assert screen.ui_tree.path(chat_id)[-2].content == "another question"


@pytest.mark.slow
async def test_party_turns_force_talk_and_auto_mode(chat_ws: Path) -> None:
    app = create_app(chat_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await wait_until(pilot, lambda: app.current_mode == "party")
        screen = app.screen
        assert len(screen.members()) >= 2
        await pilot.press("ctrl+n")
        await idle(pilot, app, 1)
        speakers = [m.speaker for m in screen.ui_tree.path(screen.chat_id)]
        assert len(speakers) == 1 and speakers[0] in screen.members()

        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: app.screen is not screen)
        await pilot.press("down", "enter")  # the second member
        await idle(pilot, app, 2)
        assert screen.ui_tree.path(screen.chat_id)[-1].speaker == screen.members()[1]

        await pilot.press("ctrl+a")  # auto mode: turns keep coming until the user types
        await wait_until(pilot, lambda: len(screen.ui_tree.path(screen.chat_id)) >= 4, timeout=180)
        await pilot.press("i", "h")
        await pilot.pause()
        assert screen.auto_timer is None
        await wait_until(pilot, lambda: not screen.busy, timeout=60)
        n = len(screen.ui_tree.path(screen.chat_id))
        await pilot.pause(1.0)
        assert len(screen.ui_tree.path(screen.chat_id)) == n  # stopped
        for m in screen.ui_tree.path(screen.chat_id):
            assert m.adapter == "base"  # no adapters trained here: every turn is marked base


async def test_engine_start_failure_is_shown_and_app_stays_usable(tmp_path: Path) -> None:
    short_personas(tmp_path)
    (tmp_path / "settings.jsonc").write_text(json.dumps({
        "model": {"name_or_path": str(tmp_path / "no-such-model")}, "engine": {"backend": "transformers"},
    }))
    app = create_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "chat" and bool(app.screen.query("#conv-input")))
        await pilot.press("i", *"hi", "enter")
        await wait_until(pilot, lambda: app.engine_state.startswith("failed"), timeout=60)
        await wait_until(pilot, lambda: any("error" in h for h in heads(app)))
        err = [v for v in app.screen.query(MessageView) if "error" in v._head][0]
        assert "no-such-model" in err.text
        await pilot.press("escape", "2")  # still responsive
        await wait_until(pilot, lambda: app.current_mode == "review")


@pytest.mark.slow
async def test_chat_shows_retrieved_lore_and_stops_on_request(chat_ws: Path) -> None:
    cfg = json.loads((chat_ws / "settings.jsonc").read_text())
    cfg["rag_args"] = {"enable": True, "max_distance": 0.8}
    cfg["infer_args"]["max_new_tokens"] = 400
    (chat_ws / "settings.jsonc").write_text(json.dumps(cfg))
    lore = chat_ws / "personas" / "alice" / "lore"
    lore.mkdir()
    (lore / "garden.md").write_text("# Garden\n\nAlice's garden has red roses and an old oak tree.\n")
    app = create_app(chat_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "chat" and bool(app.screen.query("#conv-input")))
        screen = app.screen
        # The user presses stop as soon as the first words arrive (a tiny model on the CPU is too
        # quick to race from here, so the stop action is taken from the first delta).
        deltas = screen.on_delta

        def first_delta_stops(persona_id: str, text: str) -> None:
            deltas(persona_id, text)
            if not getattr(screen, "_stop_sent", False):
                screen._stop_sent = True
                app.call_from_thread(screen.action_stop)

        screen.on_delta = first_delta_stops
        await pilot.press("i", *"tell me about your garden roses", "enter")
        await wait_until(pilot, lambda: app.engine_error is not None or (
            screen.chat_id is not None and len(screen.ui_tree.path(screen.chat_id)) == 3 and not screen.busy),
            timeout=180)
        assert app.engine_error is None, app.engine_error
        stopped = screen.ui_tree.path(screen.chat_id)[-1]
        assert stopped.role == "assistant"
        assert "lore 1" in heads(app)[-1]
        await pilot.press("escape", "l")
        assert "red roses" in str(screen.query_one("#conv-lore").render())
        # the same greedy reply, not stopped, is longer: the stop really cut generation short
        screen.on_delta = deltas
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: "swipe 2/2" in " ".join(heads(app)) and not screen.busy, timeout=180)
        full = screen.ui_tree.path(screen.chat_id)[-1]
        assert full.id != stopped.id and len(full.content) > len(stopped.content)
        # ctrl+x is the stop key even while typing (it outranks the input's own ctrl+x)
        await pilot.press("i", "ctrl+x")
        assert "nothing to stop" in str(screen.query_one("#conv-info").render())


@pytest.mark.slow
async def test_focused_message_keys_and_the_new_chat_in_the_list(chat_ws: Path) -> None:
    from textual.widgets import Select
    from textual.widgets._footer import FooterKey

    app = create_app(chat_ws)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")
        await wait_until(pilot, lambda: app.current_mode == "chat")
        await pilot.press("i", *"hi there", "enter")
        await idle(pilot, app, 3)
        screen = app.screen
        # The chat just started is in the chat list, selected.
        pick = screen.query_one("#chat-pick", Select)
        assert pick.value == screen.chat_id
        # Up from the input focuses the last message: it is highlighted and the footer shows its keys.
        await pilot.press("up")
        await pilot.pause()
        views = list(screen.query(MessageView))
        assert screen.focused is views[-1]
        await pilot.pause(0.2)
        shown = [fk.description for fk in screen.query(FooterKey)]
        assert {"Edit", "Regenerate", "Branch here", "Delete"} <= set(shown), shown
        await pilot.press("up")
        assert screen.focused is views[-2]


def test_message_header_marks_stopped_edited_and_trimmed_replies() -> None:
    """What a reply's header says about it (the stop path itself runs for real in
    tests/test_engine_service.py: meta['stopped'] after an abort mid-stream)."""
    from types import SimpleNamespace

    from persona_studio.tui.widgets.messages import head_for

    msg = SimpleNamespace(role="assistant", speaker="alice", adapter="alice/v0002", n_tokens=12,
                          meta={"stopped": True, "trimmed": {"history": 3, "lore": 1}})
    head = head_for(msg, {"alice": "Alice"})
    assert head.startswith("Alice · alice/v0002 · 12 tok") and "stopped" in head
    assert "left out 3 old lines, 1 lore" in head
    plain = SimpleNamespace(role="assistant", speaker="alice", adapter="alice/v0002", n_tokens=5, meta={})
    assert "stopped" not in head_for(plain, {"alice": "Alice"})
