"""`import`, `speakers`, `make-dataset`, `score` and `export dataset`: the data commands, headless.

Each prints a short human summary, or with `--json` one JSON object; progress goes to stderr
and only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from persona_studio.termsafe import json_text


class TerminalProgress:
    """A progress bar (known total) or a running count (unknown total) on stderr, at most 10 Hz."""

    def __init__(self, label: str):
        self.label = label
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int | None) -> None:
        if total == 0:
            return
        now = time.monotonic()
        final = total is not None and done >= total
        if not final and now - self.last < 0.1:
            return
        self.last = now
        if total:
            width = 30
            fill = int(width * min(done, total) / total)
            line = f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {done:,}/{total:,}"
        else:
            line = f"\r{self.label}: {done:,} messages"
        print(line, end="", file=sys.stderr, flush=True)
        self.shown = True

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr, flush=True)


def progress_for(label: str) -> TerminalProgress | None:
    return TerminalProgress(label) if sys.stderr.isatty() else None


def _run_with_progress(label: str, fn: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    bar = progress_for(label)
    try:
        return fn(bar)
    finally:
        if bar is not None:
            bar.close()


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from persona_studio.ingest import FORMATS

    p = sub.add_parser("import", parents=[common], help="import chat export files for a persona (or list/undo imports)")
    p.add_argument("files", nargs="*", metavar="FILE", help="chat exports (a WhatsApp .zip is read in place)")
    p.add_argument("--persona", metavar="ID",
                   help="the persona to import into (default: the one whose personas/<id>/ folder holds FILE)")
    p.add_argument("--me", metavar="SPEAKER",
                   help="the persona's speaker (name or id; see `speakers FILE`); optional for datasets with roles")
    p.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    p.add_argument("--create", action="store_true",
                   help="create the persona if it does not exist (a card skeleton named after --me)")
    p.add_argument("--undo", type=int, metavar="IMPORT_ID",
                   help="undo an import: remove its messages and the samples made only from them")
    p.add_argument("--list", action="store_true", help="list imports (of --persona, or all), newest first")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_import)

    p = sub.add_parser("speakers", parents=[common], help="list the speakers of a chat export with message counts")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    p.add_argument("--json", action="store_true", help="print JSON [[speaker, count], ...]")
    p.set_defaults(handler=run_speakers, needs_workspace=False)

    p = sub.add_parser("make-dataset", parents=[common],
                       help="clean a persona's messages into training samples (re-runnable)")
    p.add_argument("--persona", required=True, metavar="ID")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--force", action="store_true",
                   help="drop review work (accept/reject/edits) that cannot be carried over to re-made samples")
    p.set_defaults(handler=run_make_dataset)

    p = sub.add_parser("score", parents=[common], help="score a persona's samples with the LLM judge")
    p.add_argument("--persona", required=True, metavar="ID")
    p.add_argument("--rescore", action="store_true", help="score samples this judge already scored, too")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_score)


def register_export(export_sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from persona_studio.export.dataset import FORMATS, STATUS_CHOICES

    p = export_sub.add_parser("dataset", parents=[common], help="samples as OpenAI / ShareGPT / Alpaca JSONL")
    p.add_argument("--persona", required=True, metavar="ID")
    p.add_argument("--format", default="openai", choices=FORMATS)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the .jsonl file to write")
    p.add_argument("--status", default="usable", choices=STATUS_CHOICES,
                   help="usable (default) = what training uses: accepted, plus pending while nothing is scored")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_export_dataset)


def _print_json(obj: Any) -> None:
    print(json_text(obj))


def _run_import_log(args: argparse.Namespace, ws: Any) -> int:
    """`import --list` and `import --undo ID`."""
    from persona_studio.errors import UserError
    from persona_studio.importlog import describe, list_imports, undo_import

    if args.files or (args.list and args.undo is not None):
        raise UserError("import: --list and --undo take no FILE and not each other")
    if args.undo is not None:
        summary = undo_import(ws, args.undo)
        print(json_text(summary) if args.json else describe(summary))
        return 0
    rows = list_imports(ws, args.persona)
    if args.json:
        _print_json(rows)
    elif not rows:
        print("no imports yet", file=sys.stderr)
    for r in [] if args.json else rows:
        print(f"{r['id']:>5}  {r['persona']:<16} {r['imported_at'][:19]}  {r['format']:<10} "
              f"{r['messages']:>9,}  {r['path']}")
    return 0


def run_import(args: argparse.Namespace, ws: Any) -> int:
    from persona_studio.errors import UserError
    from persona_studio.importer import import_files

    if args.undo is not None or args.list:
        return _run_import_log(args, ws)
    if args.files and not args.persona:
        # files under personas/<id>/ belong to that persona; anywhere else, say which
        from persona_studio.importlog import persona_of_files

        args.persona = persona_of_files(ws, [Path(f) for f in args.files])
        if args.persona is None:
            raise UserError("import: which persona? give --persona ID (files outside personas/<id>/)")
    if not args.files or not args.persona:
        raise UserError("import: give FILE... and --persona ID (or --list / --undo IMPORT_ID)")
    summary = _run_with_progress(
        "importing",
        lambda bar: import_files(ws, args.persona, args.files, args.me, args.format, bar, create=args.create),
    )
    if args.json:
        _print_json(summary)
        return 0
    if "created_persona" in summary:
        print(f"created persona '{args.persona}' ({summary['created_persona']}): fill in its card")
    for f in summary["files"]:
        if f["status"] == "unchanged":
            print(f"{f['path']}: already imported for {args.persona} (unchanged)")
            continue
        skipped = sum(f["skipped_kinds"].values())
        if "pairs" in f:  # a DPO/KTO dataset: preference pairs, no messages
            print(f"{f['path']}: {f['format']} ({f['encoding']}): {f['pairs']:,} preference pairs stored, "
                  f"{f['bad']:,} bad records, {f['kto_unpaired']:,} KTO rows without a counterpart")
            for ex in f["bad_examples"][:3]:
                print(f"  bad: {ex}")
            continue
        print(f"{f['path']}: {f['format']} ({f['encoding']}): {f['stored']:,} messages stored, "
              f"{f['me_messages']:,} by the persona, {f['bad']:,} bad lines, {skipped:,} records skipped "
              f"(import {f['import_id']}; undo with `import --undo {f['import_id']}`)")
        for ex in f["bad_examples"][:3]:
            print(f"  bad: {ex}")
    return 0


def run_speakers(args: argparse.Namespace, _ws: None) -> int:
    from persona_studio.ingest import speakers
    from persona_studio.ingest.base import check_readable
    from persona_studio.termsafe import strip_controls

    path = Path(args.file).expanduser()
    check_readable(path)
    rows = speakers(path, args.format)
    if args.json:
        _print_json([[s, n] for s, n in rows])
    else:
        for s, n in rows:
            print(f"{n:>9,}  {strip_controls(s)}")  # names from an untrusted export: no escape sequences
    return 0


def run_make_dataset(args: argparse.Namespace, ws: Any) -> int:
    from persona_studio.clean.pipeline import make_dataset

    summary = _run_with_progress("make-dataset", lambda bar: make_dataset(ws, args.persona, bar, force=args.force))
    if args.json:
        _print_json(summary)
        return 0
    m, s, t = summary["messages"], summary["samples"], summary["tokens"]
    print(f"{args.persona}: {m['read']:,} messages read, {m['kept']:,} kept; "
          f"{s['total']:,} samples ({s['new']:,} new, {s['kept_with_review_state']:,} unchanged, "
          f"{s['removed_stale']:,} removed, {s['duplicates_dropped']:,} duplicates dropped)")
    carried = summary.get("review") or {}
    if any(carried.values()):
        print(f"  review work carried to re-made samples: {carried['carried_status']:,} statuses, "
              f"{carried['carried_edits']:,} edits; dropped (--force): {carried['dropped']:,} samples")
    if m["skipped"]:
        print("  skipped: " + ", ".join(f"{k} {v:,}" for k, v in m["skipped"].items()))
    if summary["redacted"]:
        print("  redacted: " + ", ".join(f"{k} {v:,}" for k, v in summary["redacted"].items()))
    if summary["blocked"]["hits"]:
        print("  blocked words: " + ", ".join(f"{k} {v:,}" for k, v in summary["blocked"]["words"].items()))
    if t.get("samples"):
        print(f"  tokens ({t['counter']}): p50 {t['p50']}, p95 {t['p95']}, p99 {t['p99']}, max {t['max']}; "
              f"suggested cutoff_len {t['suggested_cutoff_len']} (now {t['cutoff_len']}, "
              f"{t['truncated_at_cutoff']:,} samples longer)")
    if "judge" in summary:
        j = summary["judge"]
        print(f"  judge {j['judge']}: {j['scored']:,} scored, {j.get('accepted', 0):,} accepted, "
              f"{j.get('rejected', 0):,} rejected")
    return 0


def run_score(args: argparse.Namespace, ws: Any) -> int:
    from persona_studio.clean.judge import score_persona

    summary = _run_with_progress(
        "scoring", lambda bar: score_persona(ws, args.persona, rescore=args.rescore, progress=bar)
    )
    if args.json:
        _print_json(summary)
    else:
        print(f"{args.persona}: judge {summary['judge']}: {summary['scored']:,} scored, "
              f"{summary.get('accepted', 0):,} accepted, {summary.get('rejected', 0):,} rejected "
              f"(accept_score {summary['accept_score']})")
    return 0


def run_export_dataset(args: argparse.Namespace, ws: Any) -> int:
    from persona_studio.export.dataset import export_dataset

    summary = _run_with_progress(
        "exporting", lambda bar: export_dataset(ws, args.persona, args.format, args.output, args.status, bar)
    )
    if args.json:
        _print_json(summary)
    else:
        print(f"wrote {summary['written']:,} samples ({args.format}) to {summary['path']}")
    return 0
