"""`persona list|new|import|show` and `export card`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from persona_studio.errors import UserError
from persona_studio.termsafe import json_text
from persona_studio.workspace import Workspace, atomic_write


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    persona = sub.add_parser("persona", parents=[common], help="list, import and show persona cards")
    psub = persona.add_subparsers(dest="persona_command", metavar="ACTION", required=True)

    p = psub.add_parser("list", parents=[common], help="list the workspace's personas")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_list)

    p = psub.add_parser("new", parents=[common], help="start a persona: write a commented card skeleton to fill in")
    p.add_argument("id", help="persona id: lowercase letters, digits, '-' and '_'")
    p.add_argument("--name", help="the persona's name (default: the id)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_new)

    p = psub.add_parser("import", parents=[common], help="import a Character Card V1/V2/V3 (.json or .png)")
    p.add_argument("card", help="card file (.json or .png)")
    p.add_argument("--id", help="persona id (default: from the card's name)")
    p.add_argument("--replace", action="store_true", help="overwrite an existing persona with this id")
    p.add_argument("--no-index", action="store_true", help="don't index the card's character_book now")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_import)

    p = psub.add_parser("show", parents=[common], help="print one persona's card")
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="print the persona as JSON")
    p.set_defaults(handler=run_show)


def register_export(export_sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = export_sub.add_parser("card", parents=[common], help="a persona as a Character Card (JSON or PNG)")
    p.add_argument("--persona", metavar="ID", required=True)
    p.add_argument("--format", choices=["v2", "v3"], default="v3")
    p.add_argument("--png", action="store_true", help="embed the card in a PNG (the persona's avatar.png if any)")
    p.add_argument("-o", "--out", metavar="PATH", help="output file (default: .studio/exports/<id>.<format>.json|png)")
    p.set_defaults(handler=run_export_card)


def run_list(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.persona.card import list_personas

    personas = list_personas(ws)
    if args.json:
        rows = [
            {"id": p.id, "name": p.name, "tags": p.tags, "talkativeness": p.talkativeness, "creator": p.creator}
            for p in personas
        ]
        print(json_text(rows))
        return 0
    if not personas:
        print("no personas yet (start one with `persona-studio persona new ID`, or import a card with "
              "`persona-studio persona import CARD`)", file=sys.stderr)
    for p in personas:
        tags = f"  [{', '.join(p.tags)}]" if p.tags else ""
        print(f"{p.id:<20} {p.name}{tags}")
    return 0


def run_new(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.persona.skeleton import new_persona

    path = new_persona(ws, args.id, args.name)
    if args.json:
        print(json_text({"id": args.id, "name": args.name or args.id, "path": str(path)}))
    else:
        print(f"created persona '{args.id}': edit {path}, then "
              f"`persona-studio import FILE --persona {args.id} --me NAME`")
    return 0


def run_import(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.persona import png
    from persona_studio.persona.card import from_card, read_card_file, save_persona

    path = Path(args.card)
    card = read_card_file(path)
    persona = from_card(card, args.id, source=str(path))
    target = ws.persona_dir(persona.id)
    if (target / "persona.jsonc").exists() and not args.replace:
        raise UserError(f"{path}: persona '{persona.id}' already exists (use --id NEW or --replace)")
    save_persona(ws, persona)
    blob = path.read_bytes()
    if blob.startswith(png.SIGNATURE):
        atomic_write(target / "avatar.png", blob)  # reused as the image of exported PNG cards
    report = None
    if persona.character_book and not args.no_index:
        from persona_studio.commands.lore import terminal_progress
        from persona_studio.persona.lore import LoreStore

        report = LoreStore(ws).index(persona.id, progress=terminal_progress("indexing lore"))
    summary = {"id": persona.id, "name": persona.name, "path": str(target / "persona.jsonc")}
    if report:
        summary["lore"] = report.to_dict()
    if args.json:
        print(json_text(summary))
    else:
        extra = f" (lore: {report.chunks_added} chunks indexed)" if report else ""
        print(f"imported {persona.name!r} as persona '{persona.id}'{extra}")
    return 0


def run_show(args: argparse.Namespace, ws: Workspace) -> int:
    import dataclasses

    from persona_studio.persona.card import load_persona

    p = load_persona(ws, args.id)
    if args.json:
        print(json_text(dataclasses.asdict(p), indent=2))
        return 0
    print(f"{p.name} ({p.id})" + (f" — {p.nickname}" if p.nickname else ""))
    print(f"talkativeness {p.talkativeness:.2f}" + (f"; tags: {', '.join(p.tags)}" if p.tags else ""))
    for label in ("description", "personality", "scenario", "first_mes", "system_prompt"):
        value = getattr(p, label)
        if value:
            print(f"\n{label}:\n  " + value.strip().replace("\n", "\n  "))
    if p.alternate_greetings:
        print(f"\nalternate greetings: {len(p.alternate_greetings)}")
    if p.character_book:
        print(f"character book: {len(p.character_book.get('entries', []))} entries")
    return 0


def run_export_card(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.persona.card import load_persona, to_card_v2, to_card_v3, write_card_png

    p = load_persona(ws, args.persona)
    card = to_card_v3(p) if args.format == "v3" else to_card_v2(p)
    suffix = "png" if args.png else "json"
    out = Path(args.out) if args.out else ws.exports_dir / f"{p.id}.{args.format}.{suffix}"
    if args.png:
        avatar = ws.persona_dir(p.id) / "avatar.png"
        write_card_png(card, out, avatar.read_bytes() if avatar.exists() else None)
    else:
        atomic_write(out, json.dumps(card, ensure_ascii=False, indent=2) + "\n")
    print(str(out))
    return 0
