"""`persona-studio`: the TUI by default, headless subcommands for everything else.

Each area registers its own subcommands from `persona_studio/commands/<area>.py`
(`register(sub)`, and optionally `register_export(export_sub)` for `export <kind>`), so a new
feature adds a module here, not a branch in this file. Handlers take (args, workspace) and
return an exit code; a `UserError` anywhere becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from persona_studio import __version__
from persona_studio.errors import UserError

COMMAND_MODULES = [
    "persona_studio.commands.core",
    "persona_studio.commands.data",
    "persona_studio.commands.train",
    "persona_studio.commands.chat",
    "persona_studio.commands.engine",
    "persona_studio.commands.lore",
    "persona_studio.commands.persona",
    "persona_studio.commands.review",
    "persona_studio.commands.prefs",
    "persona_studio.commands.export",
    "persona_studio.commands.eval",
]

Handler = Callable[[argparse.Namespace, Any], int]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's copy of the option must not overwrite `-w DIR` given before it.
    common.add_argument(
        "--workspace", "-w", metavar="DIR", default=argparse.SUPPRESS,
        help="workspace directory (default: the current directory)",
    )
    parser = argparse.ArgumentParser(
        prog="persona-studio",
        description="Turn chat logs into character personas. With no command, opens the studio (TUI).",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"persona-studio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    export = sub.add_parser("export", parents=[common], help="export datasets, adapters, models, cards")
    export_sub = export.add_subparsers(dest="export_kind", metavar="KIND", required=True)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # an area not built yet
                continue
            raise
        if hasattr(mod, "register"):
            mod.register(sub, common)
        if hasattr(mod, "register_export"):
            mod.register_export(export_sub, common)
    return parser


def studio_only(argv: Sequence[str]) -> tuple[bool, str | None]:
    """(True, DIR or None) when argv only opens the studio: nothing, or `-w/--workspace DIR`.

    Those launches skip building the parser: importing every command module and building
    its subparsers is ~0.1 s of a warm start (launch to first reply) that users wait for.
    Anything else, including `-w` without a directory, goes through the full parser.
    """
    args = list(argv)
    if not args:
        return True, None
    if len(args) == 2 and args[0] in ("-w", "--workspace") and not args[1].startswith("-"):
        return True, args[1]
    if len(args) == 1 and args[0].startswith("--workspace=") and len(args[0]) > len("--workspace="):
        return True, args[0].split("=", 1)[1]
    return False, None


def main(argv: Sequence[str] | None = None) -> int:
    studio, workspace = studio_only(sys.argv[1:] if argv is None else argv)
    if studio:
        handler: Handler | None = None
    else:
        args = build_parser().parse_args(argv)
        workspace = getattr(args, "workspace", None)
        handler = getattr(args, "handler", None)
    try:
        if handler is None:
            from persona_studio.tui.run import run_tui

            return run_tui(workspace)
        ws = None
        if getattr(args, "needs_workspace", True):
            from persona_studio.workspace import Workspace

            ws = Workspace.open(workspace)
        return handler(args, ws)
    except UserError as exc:
        print(f"persona-studio: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("persona-studio: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `persona-studio ... | head`: the reader left; say nothing more (and not on the dead pipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
