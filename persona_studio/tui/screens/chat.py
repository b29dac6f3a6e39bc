"""The Chat stage: one persona, streaming replies, swipes, edits, branches."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Select

from persona_studio.tui.screens.conversation import ConversationScreen


class ChatScreen(ConversationScreen):
    PERSONA_SELECT = "#chat-persona"
    STAGE_TITLE = "Chat"
    KIND = "chat"

    def compose_toolbar(self) -> ComposeResult:
        with Horizontal(classes="toolbar"):
            yield Select([], prompt="persona", id="chat-persona")
            yield Select([], prompt="new chat", id="chat-pick")

    def on_mount(self) -> None:
        super().on_mount()
        self.fill_personas("#chat-persona")

    def persona(self) -> str | None:
        v = self.query_one("#chat-persona", Select).value
        return v if isinstance(v, str) else None

    def fill_chats(self, select: int | None = None) -> None:
        """The persona's chats, newest first (chats started in this session too)."""
        persona = self.persona()
        chats = [c for c in self.ui_tree.chats("chat") if persona in c.personas]
        pick = self.query_one("#chat-pick", Select)
        with self.prevent(Select.Changed):
            pick.set_options([(f"#{c.id} {c.title or c.created_at[:16]}", c.id) for c in reversed(chats)])
            if select is not None:
                pick.value = select

    @on(Select.Changed, "#chat-persona")
    def _persona(self) -> None:
        self.fill_chats()
        self.chat_id = None
        self.run_worker(self.reload(), exclusive=True, group="reload")
        self.greeting_shown()

    @on(Select.Changed, "#chat-pick")
    async def _pick(self, event: Select.Changed) -> None:
        self.chat_id = event.value if isinstance(event.value, int) else None
        await self.reload()

    async def action_new_chat(self) -> None:
        self.query_one("#chat-pick", Select).clear()
        self.chat_id = None
        await self.reload()
        self.greeting_shown()

    def greeting_shown(self) -> None:
        from persona_studio import adapters
        from persona_studio.persona.card import load_persona

        p = self.persona()
        if p is None:
            self.info("no personas in this workspace yet")
            return
        card = load_persona(self.workspace, p)
        adapter = adapters.current_version(self.workspace, p)
        self.info(f"new chat with {card.name} · "
                  + (f"adapter {p}/{adapter}" if adapter else "[b yellow]no adapter: base model[/]"))

    @on(Input.Submitted, "#conv-input")
    def send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        persona = self.persona()
        if not text or persona is None or self.busy:
            return
        event.input.value = ""
        self.with_engine(lambda: self._send(persona, text))

    def _send(self, persona: str, text: str) -> None:
        if self.chat_id is None:
            from persona_studio.persona.card import load_persona

            card = load_persona(self.workspace, persona)
            chat = self.ui_tree.create_chat([persona], kind="chat", title=text[:40])
            if card.first_mes:  # the card's greeting opens the chat, as character front ends do
                self.ui_tree.add(chat.id, "assistant", persona, card.first_mes, adapter="greeting")
            self.chat_id = chat.id
            self.fill_chats(select=chat.id)
        name = self.names.get(persona, persona)

        def job(conv: Any) -> None:
            conv.say(text)
            self.turn_started(persona, name)
            conv.reply(persona, on_delta=self.on_delta)

        self.start_generation(job)
