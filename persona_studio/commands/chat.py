"""`chat` (one-shot reply from one persona) and `party` (a headless tea party).

Both use the same path as the TUI: make_engine(ws) → Conversation → ChatTree in the store; on
the vllm backend that is the engine service (commands/engine.py `command_engine`).
A failure mid-party keeps every turn already said (in the store and in the printed
transcript) and exits 2 with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
from typing import Any

from persona_studio.chat.party import STRATEGIES
from persona_studio.commands.engine import add_keep_engine_arg, command_engine
from persona_studio.errors import UserError
from persona_studio.termsafe import json_text
from persona_studio.workspace import Workspace


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("chat", parents=[common], help="one reply from a persona (headless)")
    p.add_argument("persona", help="persona id")
    p.add_argument("--message", "-m", required=True, help="what you say")
    p.add_argument("--chat", type=int, default=None, metavar="ID", help="continue this chat (default: a new one)")
    p.add_argument("--user-name", default="User", help="your name in the conversation")
    _sampling_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_chat)

    p = sub.add_parser("party", parents=[common], help="a tea party between 2+ personas (headless)")
    p.add_argument("personas", nargs="+", help="persona ids (2 or more)")
    p.add_argument("--turns", type=int, default=6, help="persona turns to generate (default 6)")
    p.add_argument("--topic", default="", help="your opening line (default: the personas start)")
    p.add_argument("--strategy", choices=STRATEGIES, default=None, help="speaker choice (default: settings party.strategy)")
    p.add_argument("--force", action="append", default=[], metavar="ID", help="force this persona to speak next (repeatable)")
    p.add_argument("--scenario", default="", help="a shared scenario replacing the cards' own")
    p.add_argument("--user-name", default="User", help="your name in the conversation")
    _sampling_args(p)
    p.add_argument("--json", action="store_true", help="print the transcript as JSON")
    p.set_defaults(handler=run_party)


def _sampling_args(p: argparse.ArgumentParser) -> None:
    add_keep_engine_arg(p)
    p.add_argument("--seed", type=int, default=None, help="random seed (speaker choice and sampling)")
    p.add_argument("--temperature", type=float, default=None, help="override infer_args.temperature")
    p.add_argument("--max-new-tokens", type=int, default=None, help="override infer_args.max_new_tokens")


def _sampling(ws: Workspace, args: argparse.Namespace) -> Any:
    from persona_studio.engine.base import Sampling

    s = Sampling.from_infer_args(ws.settings.infer_args, seed=args.seed)
    if args.temperature is not None:
        s.temperature = args.temperature
    if args.max_new_tokens is not None:
        if args.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens {args.max_new_tokens}: must be at least 1")
        s.max_new_tokens = args.max_new_tokens
    return s


def run_chat(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.chat.session import Conversation
    from persona_studio.chat.tree import ChatError, ChatTree
    from persona_studio.persona.card import load_persona

    load_persona(ws, args.persona)  # a bad id fails before the engine's long start
    store = ws.store()
    stack = contextlib.ExitStack()
    tree = ChatTree(store)
    if args.chat is not None:
        chat = tree.chat(args.chat)
        if args.persona not in chat.personas:
            raise ChatError(f"chat {args.chat}: {args.persona!r} is not in it ({', '.join(chat.personas)})")
    try:
        engine = stack.enter_context(command_engine(ws, args))
        kw = {"user_name": args.user_name, "sampling": _sampling(ws, args)}
        if args.chat is not None:
            conv = Conversation(ws, engine, tree, args.chat, **kw)
        else:
            conv = Conversation.create(ws, engine, tree, [args.persona], kind="chat", title=args.message[:40], **kw)
        conv.say(args.message)
        live = not args.json and sys.stdout.isatty()
        r = conv.reply(args.persona, on_delta=(lambda _p, d: print(d, end="", flush=True)) if live else None)
    finally:
        stack.close()
        store.close()
    if args.json:
        print(json_text({"chat_id": conv.chat_id, **r.as_json()}))
    elif live:
        print(f"\n[{r.adapter}]")
    else:
        print(f"{r.name} [{r.adapter}]: {r.text}")
    return 0


def run_party(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.chat.session import Conversation, TurnResult
    from persona_studio.chat.tree import ChatTree
    from persona_studio.persona.card import load_persona

    ids = list(dict.fromkeys(args.personas))
    if len(ids) < 2:
        raise UserError(f"party: needs at least 2 different personas, got {', '.join(ids)}")
    if args.turns < 1:
        raise UserError(f"--turns {args.turns}: must be at least 1")
    for pid in [*ids, *args.force]:
        load_persona(ws, pid)
    unknown = [f for f in args.force if f not in ids]
    if unknown:
        raise UserError(f"--force {unknown[0]}: not one of the party's personas ({', '.join(ids)})")
    strategy = args.strategy or ws.settings.party.strategy
    if strategy == "manual" and not args.force:
        raise UserError("--strategy manual: nobody speaks on their own; name speakers with --force ID")
    store = ws.store()
    tree = ChatTree(store)
    stack = contextlib.ExitStack()
    live = not args.json and sys.stdout.isatty()
    results: list[TurnResult] = []
    conv: Conversation | None = None
    error: UserError | None = None
    try:
        engine = stack.enter_context(command_engine(ws, args))
        conv = Conversation.create(
            ws, engine, tree, ids, kind="party", title=args.topic[:40] or "tea party",
            settings={"strategy": strategy, "scenario": args.scenario}, user_name=args.user_name,
            sampling=_sampling(ws, args), rng=random.Random(args.seed),
        )
        if args.topic:
            conv.say(args.topic)

        shown: dict[str, str | None] = {"speaker": None}

        def on_turn(r: TurnResult) -> None:
            results.append(r)
            if live:
                print(f"  [{r.adapter}]", flush=True)
                shown["speaker"] = None
            elif not args.json:
                print(f"{r.name} [{r.adapter}]: {r.text}", flush=True)

        def on_delta(pid: str, d: str) -> None:
            if shown["speaker"] != pid:  # a new turn: print the speaker's name first
                print(f"{conv.names[pid] if conv else pid}: ", end="")
                shown["speaker"] = pid
            print(d, end="", flush=True)

        conv.run(
            args.turns, strategy=strategy, allow_self=ws.settings.party.allow_self_responses,
            forced=args.force, on_delta=on_delta if live else None, on_turn=on_turn,
        )
    except UserError as exc:
        error = exc  # keep what was said; report below
    finally:
        stack.close()
        store.close()
    if args.json:
        out: dict[str, Any] = {
            "chat_id": conv.chat_id if conv else None,
            "strategy": strategy,
            "topic": args.topic,
            "turns": [r.as_json() for r in results],
        }
        if error is not None:
            out["error"] = str(error)
        print(json_text(out))
    if error is not None:
        raise error
    return 0
