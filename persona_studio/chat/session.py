"""One conversation (a 1:1 chat or a tea party) driven by an engine and stored as a tree.

The TUI's Chat and Party screens and the headless `chat`/`party` commands all go through
`Conversation`: `say()` adds the user's line, `reply()` generates one persona's turn with
its current adapter and stores it, `regenerate()` adds a swipe, `run()` is the party loop.
Every finished turn is committed before the next starts, so an engine failure mid-party
loses nothing that was already said.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from persona_studio import adapters
from persona_studio.chat import party, prompt
from persona_studio.chat.tree import ChatError, ChatTree, Msg
from persona_studio.engine.base import Engine, GenRequest, Sampling, adapter_label
from persona_studio.workspace import Workspace

OnDelta = Callable[[str, str], None]  # (persona_id, text delta)
MIN_REPLY_TOKENS = 16  # the least room a prompt may leave for the reply


@dataclass
class TurnResult:
    message: Msg
    persona_id: str
    name: str
    adapter: str  # 'alice/v0002' or 'base'
    text: str
    lore: list[dict] = field(default_factory=list)
    n_tokens: int = 0  # tokens of the stored text
    gen_tokens: int = 0  # tokens the model generated for it (stop strings and all)
    ttft_s: float = 0.0
    elapsed_s: float = 0.0
    trimmed: dict[str, int] = field(default_factory=dict)  # what the prompt left out to fit

    def as_json(self) -> dict:
        return {
            "message_id": self.message.id,
            "speaker": self.persona_id,
            "name": self.name,
            "adapter": self.adapter,
            "text": self.text,
            "n_tokens": self.n_tokens,
            "lore": self.lore,
            "trimmed": self.trimmed,
        }


class LoreLookup:
    """Optional lore retrieval: off when rag_args.enable is false or the lore module is absent."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.enabled = ws.settings.rag_args.enable
        self._store: Any = None

    def query(self, persona_id: str, text: str) -> tuple[list[Any], str]:
        """(snippets, error); a lore failure never stops a conversation, it is recorded instead."""
        if not self.enabled or not text.strip():
            return [], ""
        try:
            if self._store is None:
                from persona_studio.persona.lore import LoreStore

                self._store = LoreStore(self.ws)
            return list(self._store.query(persona_id, text)), ""
        except ImportError:
            self.enabled = False
            return [], ""
        except Exception as exc:  # noqa: BLE001 - see docstring
            return [], str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class Conversation:
    def __init__(
        self,
        ws: Workspace,
        engine: Engine,
        tree: ChatTree,
        chat_id: int,
        *,
        user_name: str = "User",
        sampling: Sampling | None = None,
        rng: random.Random | None = None,
        lore: LoreLookup | None = None,
    ):
        from persona_studio.persona.card import load_persona

        self.ws, self.engine, self.tree, self.chat_id = ws, engine, tree, chat_id
        if tree.pii is None:  # preference pairs recorded through this tree follow the workspace's PII rules
            tree.pii = ws.settings.make_dataset.pii
        self.chat = tree.chat(chat_id)
        self.personas = {pid: load_persona(ws, pid) for pid in self.chat.personas}
        self.user_name = user_name
        self.sampling = sampling or Sampling.from_infer_args(ws.settings.infer_args)
        self.rng = rng or random.Random()
        self.lore = lore or LoreLookup(ws)
        self.names = {pid: p.name for pid, p in self.personas.items()} | {party.USER: user_name}
        self._current: str | None = None
        self._aborted = False
        self._queue: list[str] = []
        self._counts: dict[str, int] = {}

    @classmethod
    def create(
        cls, ws: Workspace, engine: Engine, tree: ChatTree, persona_ids: Sequence[str], *, kind: str = "chat",
        title: str = "", settings: dict | None = None, **kw: Any,
    ) -> Conversation:
        from persona_studio.persona.card import load_persona

        for pid in persona_ids:  # fail before a chat row exists
            load_persona(ws, pid)
        chat = tree.create_chat(list(persona_ids), kind=kind, title=title, settings=settings)
        return cls(ws, engine, tree, chat.id, **kw)

    # -- state -------------------------------------------------------------------------------
    def history(self) -> list[Msg]:
        return self.tree.path(self.chat_id)

    def members(self) -> list[party.Member]:
        return [party.Member(pid, p.name, p.talkativeness) for pid, p in self.personas.items()]

    def lines(self) -> list[party.Line]:
        return [party.Line(m.speaker, m.content) for m in self.history() if m.role != "system"]

    # -- turns -------------------------------------------------------------------------------
    def say(self, text: str) -> Msg:
        self._queue = []  # the user spoke: the next round answers them
        return self.tree.add(self.chat_id, "user", party.USER, text, n_tokens=self.count(text))

    def reply(self, persona_id: str, *, on_delta: OnDelta | None = None, swipe_of: int | None = None) -> TurnResult:
        """Generate and store `persona_id`'s next message (or a swipe beside `swipe_of`)."""
        if persona_id not in self.personas:
            raise ChatError(f"persona {persona_id!r} is not in chat {self.chat_id} ({', '.join(self.personas)})")
        persona = self.personas[persona_id]
        history = self.history()
        if swipe_of is not None:  # a swipe answers what its original answered
            parent = self.tree.message(swipe_of).parent_id
            history = self.tree.path(self.chat_id, parent) if parent is not None else []
        query = next((m.content for m in reversed(history) if m.role != "system"), persona.scenario)
        snippets, lore_error = self.lore.query(persona_id, query)
        adapter = adapters.current(self.ws, persona_id)
        names = self.names if self.chat.kind == "party" else {persona_id: persona.name, party.USER: self.user_name}
        messages, snippets, trimmed = self._fit(
            persona, history, names, snippets, scenario=str(self.chat.settings.get("scenario", ""))
        )
        sampling = self.sampling
        if trimmed.get("reply_max_tokens"):
            sampling = dataclasses.replace(sampling, max_new_tokens=trimmed["reply_max_tokens"])
        req = GenRequest(
            prompt_messages=messages,
            persona_id=persona_id,
            adapter=adapter,
            sampling=sampling,
            stop=prompt.stop_strings(persona_id, names, self.user_name),
        )
        self._current, self._aborted = req.request_id, False
        t0 = time.monotonic()
        ttft = 0.0
        parts: list[str] = []
        try:
            for delta in self.engine.generate(req):
                if not parts:
                    ttft = time.monotonic() - t0
                parts.append(delta)
                if on_delta is not None:
                    on_delta(persona_id, delta)
        finally:
            self._current = None
        elapsed = time.monotonic() - t0
        raw = "".join(parts)
        text = prompt.clean_reply(raw, persona.name, names, self.user_name)
        n_tok = self.count(text) if text else 0
        label = adapter_label(persona_id, adapter)
        lore = [{"text": s.text, "source": getattr(s, "source", ""), "distance": getattr(s, "distance", None)}
                for s in snippets]
        meta: dict[str, Any] = {
            "name": persona.name, "base_model": adapter is None, "lore": lore, "gen_tokens": req.generated_tokens,
        }
        if lore_error:
            meta["lore_error"] = lore_error
        if trimmed:
            meta["trimmed"] = trimmed  # {"lore": n, "history": m, "reply_max_tokens": k}: to fit the context
        if raw != text:
            meta["raw"] = raw
        if self._aborted:
            meta["stopped"] = True  # the user stopped it: what was said so far is kept
        if swipe_of is not None:
            msg = self.tree.add_swipe(swipe_of, text, adapter=label, n_tokens=n_tok, meta=meta)
        else:
            msg = self.tree.add(self.chat_id, "assistant", persona_id, text, adapter=label, n_tokens=n_tok, meta=meta)
        return TurnResult(msg, persona_id, persona.name, label, text, lore, n_tok, req.generated_tokens, ttft, elapsed,
                          trimmed)

    def regenerate(self, msg_id: int, *, on_delta: OnDelta | None = None) -> TurnResult:
        """A new swipe for a persona's reply; the old one stays as a sibling."""
        m = self.tree.message(msg_id)
        if m.role != "assistant":
            raise ChatError(f"message {msg_id}: only a persona's reply can be regenerated")
        return self.reply(m.speaker, on_delta=on_delta, swipe_of=msg_id)

    def abort(self) -> None:
        """Stop the reply being generated (from any thread); reply() returns what it has."""
        if self._current is not None:
            self._aborted = True
            self.engine.abort(self._current)

    def count(self, text: str) -> int:
        # Cached: the prompt is re-measured every turn, and a remote engine counts over HTTP.
        if text not in self._counts:
            if len(self._counts) > 4096:
                self._counts.clear()
            self._counts[text] = self.engine.count_tokens(text)
        return self._counts[text]

    def context_len(self) -> int:
        """The engine's context when it knows one (a server reports it; the transformers backend
        clamps to the model's positions), else the settings' (clamped to the model's config)."""
        from persona_studio.engine import context_len

        return getattr(self.engine, "max_model_len", None) or context_len(self.ws)

    def _fit(
        self, persona: Any, history: list[Msg], names: dict[str, str], snippets: list[Any], scenario: str
    ) -> tuple[list[dict], list[Any], dict[str, int]]:
        """(messages, lore kept, what was trimmed) for a prompt that leaves room for the reply.

        Lore goes first (least relevant snippet first), then the oldest lines, then the reply's
        max_new_tokens shrinks; the turn fails only when the card alone does not fit.
        """
        context = self.context_len()
        reserve = self.sampling.max_new_tokens
        kept, lore = list(history), list(snippets)
        trimmed = {"lore": 0, "history": 0}
        while True:
            msgs = prompt.build_messages(
                persona, kept, names, user_name=self.user_name, lore=lore, scenario=scenario
            )
            # +8 a message: the chat template's role markers.
            used = sum(self.count(m["content"]) + 8 for m in msgs)
            if used + reserve <= context:
                trimmed["reply_max_tokens"] = reserve if reserve < self.sampling.max_new_tokens else 0
                return msgs, lore, {k: v for k, v in trimmed.items() if v}
            if lore:
                lore.pop()
                trimmed["lore"] += 1
            elif kept:
                kept = kept[1:]
                trimmed["history"] += 1
            elif used + MIN_REPLY_TOKENS <= context:
                # Only the card is left and it leaves less than max_new_tokens: a shorter reply
                # beats no reply.
                reserve = context - used
            else:
                raise ChatError(
                    f"persona '{persona.id}': the card alone needs about {used} tokens, more than the "
                    f"{context}-token context holds with room for a reply (shorten the card, or raise "
                    "vllm_args.max_model_len)"
                )

    # -- the party loop ----------------------------------------------------------------------
    def next_speaker(self, strategy: str, *, allow_self: bool = False) -> str | None:
        """The next persona to speak; plans a new round when the current one is used up."""
        if not self._queue:
            self._queue = party.next_speakers(strategy, self.members(), self.lines(), self.rng, allow_self=allow_self)
        return self._queue.pop(0) if self._queue else None

    def run(
        self,
        turns: int,
        *,
        strategy: str = "natural",
        allow_self: bool = False,
        forced: Sequence[str] = (),
        on_delta: OnDelta | None = None,
        on_turn: Callable[[TurnResult], None] | None = None,
    ) -> list[TurnResult]:
        """Up to `turns` persona turns. `forced` speakers (force talk) go first, in order."""
        results: list[TurnResult] = []
        pending = list(forced)
        while len(results) < turns:
            pid = pending.pop(0) if pending else self.next_speaker(strategy, allow_self=allow_self)
            if pid is None:  # manual strategy and nobody forced
                break
            r = self.reply(pid, on_delta=on_delta)
            results.append(r)
            if on_turn is not None:
                on_turn(r)
        return results
