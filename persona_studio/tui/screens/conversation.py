"""What the Chat and Tea-party screens share: the transcript, streaming, and message actions.

Threads: generation runs in one exclusive thread worker per screen with its own store
connection (`gen_tree`); the UI thread reads and edits through `ui_tree`. SQLite in WAL mode
lets the two connections work side by side. Deltas travel to the UI as messages.
Every finished turn is already in the store, so an engine failure mid-stream keeps the
conversation; the error is shown in the transcript and the app stays usable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static, TextArea

from persona_studio.tui.screens.base import StageScreen
from persona_studio.tui.widgets.messages import MessageView, head_for


class EditMessage(ModalScreen[str | None]):
    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, text: str, title: str):
        super().__init__()
        self.text, self.title = text, title

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-dialog"):
            yield Label(f"{self.title} — ctrl+s save, esc cancel")
            yield TextArea(self.text, id="edit-text")

    def action_save(self) -> None:
        text = self.query_one(TextArea).text.strip()
        self.dismiss(text or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SamplingDialog(ModalScreen[dict | None]):
    """Per-chat sampling overrides (starts from settings.jsonc infer_args)."""

    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "cancel", "Cancel")]
    FIELDS = (("temperature", float), ("top_p", float), ("repetition_penalty", float), ("max_new_tokens", int))

    def __init__(self, values: dict[str, Any]):
        super().__init__()
        self.values = values

    def compose(self) -> ComposeResult:
        with Vertical(id="sampling-dialog"):
            yield Label("Sampling for this chat — ctrl+s save, esc cancel")
            for name, _ in self.FIELDS:
                yield Label(name)
                yield Input(str(self.values[name]), id=f"s-{name}")
            yield Static("", id="sampling-error")

    def action_save(self) -> None:
        out: dict[str, Any] = {}
        for name, kind in self.FIELDS:
            raw = self.query_one(f"#s-{name}", Input).value
            try:
                out[name] = kind(raw)
            except ValueError:
                self.query_one("#sampling-error", Static).update(f"[b red]{name}: not a number: {escape(repr(raw))}[/]")
                return
        self.dismiss(out)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConversationScreen(StageScreen):
    KIND = "chat"
    BINDINGS = [
        Binding("i", "type", "Type"),
        Binding("ctrl+x", "stop", "Stop", priority=True),  # before the Input's own ctrl+x (cut)
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("ctrl+t", "sampling", "Sampling"),
        # Without a focused message these act on the last one (MessageView shows them when focused).
        Binding("left_square_bracket", "swipe(-1)", "◀ swipe", show=False),
        Binding("right_square_bracket", "swipe(1)", "swipe ▶", show=False),
        Binding("e", "edit", "Edit", show=False),
        Binding("d", "delete", "Delete", show=False),
        Binding("b", "rewind", "Rewind here", show=False),
        Binding("n", "new_chat", "New chat"),
        Binding("up", "focus_message(0)", "↑ messages", show=False),
        Binding("l", "lore", "Lore", show=False),
    ]

    class Delta(Message):
        def __init__(self, persona_id: str, text: str):
            super().__init__()
            self.persona_id, self.text = persona_id, text

    class Reload(Message):
        """Redraw the transcript from the store (e.g. after the worker stored the user's line)."""

    class TurnStarted(Message):
        def __init__(self, persona_id: str, name: str):
            super().__init__()
            self.persona_id, self.name = persona_id, name

    class TurnEnded(Message):
        def __init__(self, error: str | None = None):
            super().__init__()
            self.error = error

    # -- layout ----------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        yield from self.compose_toolbar()
        yield VerticalScroll(id="conv-log")
        yield Static("", id="conv-lore", markup=False)
        yield Static("", id="conv-info")
        yield Input(placeholder=self.input_placeholder(), id="conv-input")

    def compose_toolbar(self) -> ComposeResult:
        yield from ()

    def input_placeholder(self) -> str:
        return "type a message, enter sends · ↑ picks a message · esc leaves the field · ctrl+x stops"

    def on_mount(self) -> None:
        self.ui_tree = self._tree()
        self.gen_tree: Any = None
        self.chat_id: int | None = None
        self.sampling: dict[str, Any] = dict(vars(self.workspace.settings.infer_args))
        self.conv: Any = None
        self.streaming: MessageView | None = None
        self.busy = False
        self.pending: Callable[[], None] | None = None
        self.app.engine_signal.subscribe(self, self._engine_ready)  # type: ignore[attr-defined]
        self.query_one("#conv-lore").display = False

    def on_unmount(self) -> None:
        if self.conv is not None and self.busy:
            self.conv.abort()  # don't keep the app waiting on a reply nobody will read
        self.ui_tree.store.close()

    def _tree(self) -> Any:
        from persona_studio.chat.tree import ChatTree

        return ChatTree(self.workspace.store(), pii=self.workspace.settings.make_dataset.pii)

    @property
    def names(self) -> dict[str, str]:
        from persona_studio.persona.card import load_persona

        if self.chat_id is None:
            return {}
        chat = self.ui_tree.chat(self.chat_id)
        return {p: load_persona(self.workspace, p).name for p in chat.personas} | {"user": "You"}

    def info(self, text: str) -> None:
        self.query_one("#conv-info", Static).update(text)

    # -- engine ----------------------------------------------------------------------------
    def with_engine(self, then: Callable[[], None]) -> None:
        """Run `then` now if the engine is up, or once it has started."""
        if self.app.ensure_engine():  # type: ignore[attr-defined]
            then()
        else:
            self.pending = then
            self.info("starting the engine… (the status line shows progress; you can keep using the studio)")

    def _engine_ready(self, engine: object | None) -> None:
        pending, self.pending = self.pending, None
        if engine is None:
            if pending is not None:  # a failed start nobody waited for is the status line's news
                self.show_error(f"engine failed to start: {self.app.engine_error}")  # type: ignore[attr-defined]
            return
        if pending is None:
            return  # connected ahead of time (a running service): keep what the info line says
        self.info("")
        if pending is not None:
            pending()

    def conversation(self) -> Any:
        """The Conversation for the current chat on the generation thread's own connection."""
        from persona_studio.chat.session import Conversation
        from persona_studio.engine.base import Sampling

        engine = self.app.engine  # type: ignore[attr-defined]
        if self.gen_tree is None:
            self.gen_tree = self._tree()
        if self.conv is None or self.conv.chat_id != self.chat_id or self.conv.engine is not engine:
            self.conv = Conversation(self.workspace, engine, self.gen_tree, self.chat_id)
        self.conv.sampling = Sampling(**self.sampling)
        return self.conv

    # -- generation (thread) ---------------------------------------------------------------
    def start_generation(self, job: Callable[[Any], None]) -> None:
        # busy from the moment a job is queued, so timers and keys can't start a second one
        self.busy = True
        self.generate(job)

    @work(thread=True, exclusive=True, exit_on_error=False, group="generate")
    def generate(self, job: Callable[[Any], None]) -> None:
        try:
            job(self.conversation())
        except Exception as exc:  # noqa: BLE001 - engine death, server down, bad adapter: all shown, none fatal
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.post_message(self.TurnEnded(msg))
            return
        self.post_message(self.TurnEnded())

    def on_delta(self, persona_id: str, text: str) -> None:
        self.post_message(self.Delta(persona_id, text))

    def turn_started(self, persona_id: str, name: str) -> None:
        self.post_message(self.Reload())
        self.post_message(self.TurnStarted(persona_id, name))

    @on(Reload)
    async def _reload(self) -> None:
        await self.reload()

    @on(TurnStarted)
    async def _started(self, msg: TurnStarted) -> None:
        view = MessageView(None, head=f"{msg.name} · writing…")
        self.streaming = view
        await self.query_one("#conv-log", VerticalScroll).mount(view)
        view.scroll_visible()

    @on(Delta)
    async def _delta(self, msg: Delta) -> None:
        if self.streaming is not None:
            await self.streaming.stream(msg.text)
            self.query_one("#conv-log", VerticalScroll).scroll_end(animate=False)

    @on(TurnEnded)
    async def _ended(self, msg: TurnEnded) -> None:
        self.busy = False
        if self.streaming is not None:
            await self.streaming.finish()
            self.streaming = None
        await self.reload()
        if msg.error:
            self.show_error(msg.error)

    def show_error(self, text: str) -> None:
        view = MessageView(None, head="error — the conversation so far is kept", body=text, classes="error")
        self.query_one("#conv-log", VerticalScroll).mount(view)
        view.scroll_visible()
        self.info(f"[b red]{escape(text)}[/]")

    # -- transcript ------------------------------------------------------------------------
    async def reload(self) -> None:
        log = self.query_one("#conv-log", VerticalScroll)
        await log.remove_children()
        if self.chat_id is None:
            return
        names = self.names
        views = []
        for m in self.ui_tree.path(self.chat_id):
            if m.role == "system":
                continue
            sibs = self.ui_tree.swipes(m.id)
            pos = (next(i for i, s in enumerate(sibs) if s.id == m.id) + 1, len(sibs))
            views.append(MessageView(m, head=head_for(m, names, pos), body=m.content,
                                     classes="user" if m.role == "user" else ""))
        await log.mount_all(views)
        log.scroll_end(animate=False)
        total = sum(m.n_tokens or 0 for m in self.ui_tree.path(self.chat_id))
        self.info(f"chat {self.chat_id} · {len(views)} messages · {total} tokens")

    def action_focus_message(self, step: int) -> None:
        """up/down on a message: move to the previous/next one (the input when past the last);
        up from the input (step 0) focuses the last message, whose keys the footer then shows."""
        views = list(self.query_one("#conv-log", VerticalScroll).query(MessageView))
        if self.focused not in views:
            if step == 0 and views:
                views[-1].focus()
            return
        i = views.index(self.focused) + step  # type: ignore[arg-type]
        if 0 <= i < len(views):
            views[i].focus()
        elif i >= len(views):
            self.query_one("#conv-input", Input).focus()

    def focused_message(self) -> Any | None:
        w = self.focused
        if isinstance(w, MessageView) and w.msg is not None:
            return w.msg
        path = [m for m in self.ui_tree.path(self.chat_id) if m.role != "system"] if self.chat_id else []
        return path[-1] if path else None

    # -- message actions ---------------------------------------------------------------------
    def action_type(self) -> None:
        # At once, not scheduled like Widget.focus(): keys typed right after `i` must land in the
        # input, not act as message keys (`e` edit, `l` lore) on the way.
        self.set_focus(self.query_one("#conv-input", Input))

    def action_stop(self) -> None:
        if self.conv is not None and self.busy:
            self.conv.abort()
            self.info("stopping…")
        else:
            self.info("nothing to stop")
        self.stop_requested()

    def stop_requested(self) -> None:  # the party screen also stops its auto loop
        pass

    def action_regenerate(self) -> None:
        m = self.focused_message()
        if m is None or self.busy:
            return
        if m.role != "assistant":
            self.info("only a persona's reply can be regenerated")
            return
        name = self.names.get(m.speaker, m.speaker)

        def job(conv: Any) -> None:
            self.turn_started(m.speaker, name)
            conv.regenerate(m.id, on_delta=self.on_delta)

        self.with_engine(lambda: self.start_generation(job))

    async def action_swipe(self, step: int) -> None:
        m = self.focused_message()
        if m is None:
            return
        sibs = self.ui_tree.swipes(m.id)
        i = next(i for i, s in enumerate(sibs) if s.id == m.id)
        if 0 <= i + step < len(sibs):
            self.ui_tree.select(sibs[i + step].id)
            await self.reload()

    def action_edit(self) -> None:
        m = self.focused_message()
        if m is None or self.busy:
            return

        async def done(text: str | None) -> None:
            if text is not None:
                self.ui_tree.edit(m.id, text)
                if m.role == "assistant":
                    self.notify("edit saved; (original, edited) kept as preference data")
                await self.reload()

        self.app.push_screen(EditMessage(m.content, f"Edit {self.names.get(m.speaker, m.speaker)}'s message"), done)

    async def action_delete(self) -> None:
        m = self.focused_message()
        if m is None or self.busy:
            return
        self.ui_tree.delete(m.id)
        self.notify("message and its replies deleted")
        await self.reload()

    async def action_rewind(self) -> None:
        m = self.focused_message()
        if m is None or self.busy:
            return
        self.ui_tree.rewind(m.id)
        self.notify("rewound: the next message branches from here (the old branch is kept)")
        await self.reload()

    def action_sampling(self) -> None:
        def done(values: dict | None) -> None:
            if values is not None:
                self.sampling.update(values)
                self.info("sampling: " + ", ".join(f"{k} {v}" for k, v in self.sampling.items()))

        self.app.push_screen(SamplingDialog(self.sampling), done)

    def action_lore(self) -> None:
        """Show the lore snippets retrieved for the focused (or last) reply."""
        box = self.query_one("#conv-lore", Static)
        box.display = not box.display
        msg = self.focused_message()
        lore = (msg.meta.get("lore") if msg is not None else None) or []
        lines = [f"[{s.get('source', '')} d={s.get('distance') or 0:.2f}] {s['text'][:200]}" for s in lore]
        box.update("\n".join(lines) or "no lore was retrieved for this message")

    async def action_new_chat(self) -> None:
        self.chat_id = None
        await self.reload()
