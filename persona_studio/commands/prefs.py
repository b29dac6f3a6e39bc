"""`prefs`: preference pairs (chosen vs rejected reply) for DPO/ORPO training; `export prefs`.

    persona-studio prefs list --persona ID [--source S] [--search TEXT] [--limit N] [--json]
    persona-studio prefs show PAIR_ID [--json]
    persona-studio prefs edit PAIR_ID [--chosen TEXT] [--rejected TEXT]
    persona-studio prefs delete PAIR_ID...
    persona-studio export prefs --persona ID [--format trl|llamafactory] [-o FILE] [--source S]...
Pairs are collected by chat edits, swipes and review edits, and by `import` of DPO/KTO files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from persona_studio.termsafe import json_text
from persona_studio.workspace import Workspace


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from persona_studio.prefs.store import SOURCES

    p = sub.add_parser("prefs", parents=[common], help="list, show, edit or delete preference pairs (DPO/ORPO data)")
    prefs_sub = p.add_subparsers(dest="prefs_command", metavar="ACTION", required=True)
    q = prefs_sub.add_parser("list", parents=[common], help="a persona's pairs with their source")
    q.add_argument("--persona", required=True, metavar="ID")
    q.add_argument("--source", choices=SOURCES, help="only pairs from this source")
    q.add_argument("--search", default="", metavar="TEXT", help="only pairs whose texts contain TEXT")
    q.add_argument("--limit", type=int, default=200, metavar="N", help="at most N pairs (default 200)")
    q.add_argument("--json", action="store_true", help="print JSON {counts, pairs}")
    q.set_defaults(handler=run_list)
    q = prefs_sub.add_parser("show", parents=[common], help="one pair: context, chosen, rejected")
    q.add_argument("pair_id", type=int)
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(handler=run_show)
    q = prefs_sub.add_parser("edit", parents=[common], help="change a pair's chosen and/or rejected text")
    q.add_argument("pair_id", type=int)
    q.add_argument("--chosen", metavar="TEXT")
    q.add_argument("--rejected", metavar="TEXT")
    q.set_defaults(handler=run_edit)
    q = prefs_sub.add_parser("delete", parents=[common], help="delete pairs (all given ids, or none)")
    q.add_argument("pair_ids", type=int, nargs="+", metavar="PAIR_ID")
    q.set_defaults(handler=run_delete)


def register_export(export_sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from persona_studio.prefs.export import FORMATS
    from persona_studio.prefs.store import SOURCES

    p = export_sub.add_parser("prefs", parents=[common],
                              help="a persona's preference pairs as a TRL or LLaMA-Factory DPO dataset")
    p.add_argument("--persona", required=True, metavar="ID")
    p.add_argument("--format", choices=FORMATS, default="trl")
    p.add_argument("-o", "--out", metavar="FILE",
                   help="output file (default: .studio/exports/<id>-prefs-<format>.jsonl|.json)")
    p.add_argument("--source", action="append", choices=SOURCES, help="only these sources (repeatable)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_export)


def _check_persona(ws: Workspace, persona_id: str) -> None:
    from persona_studio.importer import check_persona

    check_persona(ws, persona_id)


def run_list(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.prefs import store as prefs

    _check_persona(ws, args.persona)
    with ws.store() as store:
        pairs = prefs.list_pairs(store, args.persona, source=args.source, search=args.search, limit=args.limit)
        counts = prefs.counts(store, args.persona)
    if args.json:
        print(json_text({"counts": counts, "pairs": [p.to_dict() for p in pairs]}))
        return 0
    total = sum(counts.values())
    by = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "none yet"
    print(f"{args.persona}: {total} preference pair(s) ({by})")
    for p in pairs:
        print(f"{p.id:>6}  {p.source:<11}  {_short(p.context, 30):<30}  + {_short(p.chosen, 30):<30}  - {_short(p.rejected, 30)}")
    return 0


def _short(text: str, n: int) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def run_show(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.prefs import store as prefs

    with ws.store() as store:
        p = prefs.get_pair(store, args.pair_id)
    if args.json:
        print(json_text(p.to_dict()))
        return 0
    print(f"pair {p.id} · persona {p.persona_id} · {p.source} · {p.created_at}")
    if p.system:
        print(f"system: {p.system}")
    for t in p.prompt:
        print(f"{t['role']}: {t['content']}")
    print(f"\nchosen: {p.chosen}\n\nrejected: {p.rejected}")
    return 0


def run_edit(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.prefs import store as prefs

    if args.chosen is None and args.rejected is None:
        raise prefs.PrefError("prefs edit: give --chosen and/or --rejected")
    with ws.store() as store:
        p = prefs.edit_pair(store, args.pair_id, chosen=args.chosen, rejected=args.rejected,
                            pii=ws.settings.make_dataset.pii)
    print(f"pair {p.id} updated")
    return 0


def run_delete(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.prefs import store as prefs

    with ws.store() as store:
        n = prefs.delete_pairs(store, args.pair_ids)
    print(f"{n} pair(s) deleted")
    return 0


def run_export(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.prefs.export import export_prefs
    from persona_studio.prefs.store import SOURCES

    ext = "jsonl" if args.format == "trl" else "json"
    out = Path(args.out) if args.out else ws.exports_dir / f"{args.persona}-prefs-{args.format}.{ext}"
    summary = export_prefs(ws, args.persona, out, args.format, sources=tuple(args.source or SOURCES),
                           force=args.force)
    if args.json:
        print(json_text(summary))
    else:
        print(f"wrote {summary['pairs']} pair(s) to {summary['out']}"
              + (f" ({summary['skipped']} without a user turn to answer skipped)" if summary["skipped"] else ""))
        if "dataset_info" in summary:
            print("dataset_info.json entry: " + json_text(summary["dataset_info"]))
    return 0
