"""The Tea-party stage: several personas (and you) at one table, each through its own adapter."""

from __future__ import annotations

import random
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Select, SelectionList
from textual.widgets.option_list import Option

from persona_studio.tui.screens.conversation import ConversationScreen

STRATEGIES = [("natural", "natural"), ("list", "list"), ("pooled", "pooled"), ("manual", "manual")]


class PickSpeaker(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, members: list[tuple[str, str]]):
        super().__init__()
        self.members = members

    def compose(self) -> ComposeResult:
        with Vertical(id="pick-dialog"):
            yield Label("Force talk: who speaks next?")
            yield OptionList(*(Option(name, id=pid) for pid, name in self.members), id="pick-list")

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PartyScreen(ConversationScreen):
    STAGE_TITLE = "Tea party"
    KIND = "party"
    BINDINGS = [
        Binding("ctrl+n", "next_turn", "Next turn"),
        Binding("ctrl+a", "auto", "Auto"),
        Binding("ctrl+f", "force", "Force talk"),
    ]

    def compose_toolbar(self) -> ComposeResult:
        with Horizontal(id="party-top"):
            yield SelectionList[str](id="party-members")
            with Vertical(id="party-opts"):
                yield Select(STRATEGIES, value="natural", allow_blank=False, id="party-strategy")

    def input_placeholder(self) -> str:
        return "say something to the table (enter) · ctrl+n next turn · ctrl+a auto"

    def on_mount(self) -> None:
        super().on_mount()
        members = self.query_one("#party-members", SelectionList)
        from persona_studio.persona.card import list_personas

        for p in list_personas(self.workspace):
            members.add_option((f"{p.name} ({p.id})", p.id, True))
        self.query_one("#party-strategy", Select).value = self.workspace.settings.party.strategy
        self.auto_timer: Any = None
        self.rng = random.Random()

    # -- the table -----------------------------------------------------------------------------
    def members(self) -> list[str]:
        return list(self.query_one("#party-members", SelectionList).selected)

    def strategy(self) -> str:
        return str(self.query_one("#party-strategy", Select).value)

    @on(SelectionList.SelectedChanged)
    def _members_changed(self) -> None:
        self.chat_id = None  # a different table is a different party

    def ensure_party(self) -> bool:
        members = self.members()
        if len(members) < 2:
            self.info("[b red]pick at least two personas for a tea party[/]")
            return False
        if self.chat_id is None:
            chat = self.ui_tree.create_chat(members, kind="party", title="tea party")
            self.chat_id = chat.id
        return True

    def take_turns(self, forced: list[str] | None = None, user_text: str | None = None, turns: int = 1) -> None:
        if self.busy or not self.ensure_party():
            return
        strategy, allow_self = self.strategy(), self.workspace.settings.party.allow_self_responses
        names = self.names

        def job(conv: Any) -> None:
            from persona_studio.chat import party

            if user_text:
                conv.say(user_text)
            plan = forced or []
            if not plan:
                if strategy == "manual":
                    return  # manual: only force talk makes anyone speak
                plan = party.next_speakers(strategy, conv.members(), conv.lines(), self.rng, allow_self=allow_self)
                plan = plan[:turns] if user_text is None else plan
            for pid in plan:
                self.turn_started(pid, names.get(pid, pid))
                conv.reply(pid, on_delta=self.on_delta)

        self.with_engine(lambda: self.start_generation(job))

    @on(Input.Submitted, "#conv-input")
    def send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        event.input.value = ""
        self.take_turns(user_text=text)

    @on(Input.Changed, "#conv-input")
    def _typing(self, event: Input.Changed) -> None:
        if event.value and self.auto_timer is not None:
            self.stop_auto("auto mode stopped: you are typing")

    def action_next_turn(self) -> None:
        self.take_turns(turns=1)

    def action_force(self) -> None:
        names = self.names if self.chat_id else {}
        members = [(pid, names.get(pid, pid)) for pid in self.members()]
        if not members:
            return

        def done(pid: str | None) -> None:
            if pid:
                self.take_turns(forced=[pid])

        self.app.push_screen(PickSpeaker(members), done)

    # -- auto mode -------------------------------------------------------------------------------
    def action_auto(self) -> None:
        if self.auto_timer is not None:
            self.stop_auto("auto mode off")
            return
        delay = self.workspace.settings.party.auto_delay_s
        self.auto_timer = self.set_interval(max(delay, 0.2), self._auto_tick)
        self.info(f"auto mode: a turn every {delay:g}s after the last — type or ctrl+a to stop")
        self._auto_tick()

    def _auto_tick(self) -> None:
        if not self.busy:
            self.take_turns(turns=1)

    def stop_auto(self, why: str) -> None:
        if self.auto_timer is not None:
            self.auto_timer.stop()
            self.auto_timer = None
        self.info(why)

    def stop_requested(self) -> None:
        self.stop_auto("stopped")

    def show_error(self, text: str) -> None:
        self.stop_auto("auto mode stopped by an error")
        super().show_error(text)
