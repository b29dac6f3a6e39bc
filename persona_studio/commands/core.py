"""`init`, `info`: workspace-level commands."""

from __future__ import annotations

import argparse
import sys

from persona_studio.termsafe import json_text
from persona_studio.workspace import Workspace


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("init", parents=[common], help="create a workspace with a commented settings.jsonc")
    p.add_argument("dir", help="directory to create (may exist and be empty)")
    p.set_defaults(handler=run_init, needs_workspace=False)

    p = sub.add_parser("info", parents=[common], help="check the workspace and print what is in it")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_info)


def run_init(args: argparse.Namespace, _ws: None) -> int:
    ws = Workspace.init(args.dir)
    print(f"created workspace {ws.root} (edit {ws.settings_path.name}, add personas under personas/)")
    return 0


def run_info(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio import basemodel

    model = basemodel.describe(ws)
    store = ws.store()
    try:
        counts = {
            row["status"]: row["n"]
            for row in store.query("SELECT status, count(*) AS n FROM samples GROUP BY status")
        }
        info = {
            "workspace": str(ws.root),
            "base_model": ws.settings.model.name_or_path,
            "base_model_info": model,
            "engine": ws.settings.engine.backend,
            "personas": ws.persona_ids(),
            "schema_version": store.version,
            "samples": counts,
        }
    finally:
        store.close()
    if "problem" in model:
        # A warning, not a refusal: info is how one finds out what is wrong with a workspace.
        print(f"persona-studio: warning: {model['problem']}", file=sys.stderr)
    if args.json:
        print(json_text(info))
    else:
        rows = dict(info)
        del rows["base_model_info"]
        rows["base_model"] = f"{info['base_model']} ({model.get('title') or model['kind']})"
        rows = {k: rows[k] for k in ("workspace", "base_model")} | {"model_at": model["where"]} | rows
        for k, v in rows.items():
            print(f"{k:>15}: {v}")
    return 0
