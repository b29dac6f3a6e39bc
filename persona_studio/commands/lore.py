"""`lore index`, `lore query`: the lore store (chromadb) from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from persona_studio.termsafe import json_text
from persona_studio.workspace import Workspace


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    lore = sub.add_parser("lore", parents=[common], help="index and search persona lore (RAG)")
    lore_sub = lore.add_subparsers(dest="lore_command", metavar="ACTION", required=True)

    p = lore_sub.add_parser("index", parents=[common], help="embed new or changed lore files; drop deleted ones")
    p.add_argument("--persona", metavar="ID", help="only this persona (and shared lore); default: all")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_index)

    p = lore_sub.add_parser("query", parents=[common], help="show the lore snippets a persona would retrieve")
    p.add_argument("--persona", metavar="ID", required=True)
    p.add_argument("text", help="what to search for")
    p.add_argument("--k", type=int, default=None, help="snippets to return (default: rag_args.top_k)")
    p.add_argument("--max-distance", type=float, default=None, help="default: rag_args.max_distance")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_query)


def terminal_progress(label: str) -> Callable[[int, int], None] | None:
    """A progress line on stderr, only when a person is watching."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\r{label}: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return show


def run_index(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.persona.lore import LoreStore

    report = LoreStore(ws).index(args.persona, progress=terminal_progress("indexing lore"))
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        r = report
        print(
            f"lore: {r.added} added, {r.updated} updated, {r.removed} removed, {r.unchanged} unchanged "
            f"({r.chunks_added} chunks embedded, {r.chunks_removed} dropped)"
        )
    return 0


def run_query(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.persona.lore import LoreStore

    snippets = LoreStore(ws).query(args.persona, args.text, k=args.k, max_distance=args.max_distance)
    if args.json:
        print(json_text([s.__dict__ for s in snippets]))
        return 0
    if not snippets:
        print("no lore close enough", file=sys.stderr)
    for s in snippets:
        print(f"[{s.distance:.3f}] {s.source}")
        print("    " + s.text.replace("\n", "\n    "))
    return 0
