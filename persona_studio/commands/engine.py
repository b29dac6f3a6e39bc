"""`engine start|stop|restart|status|logs`: the workspace's engine service (engine/service.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from persona_studio.errors import UserError
from persona_studio.termsafe import json_text
from persona_studio.workspace import Workspace


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("engine", parents=[common], help="start, stop or inspect the engine service (vLLM server)")
    p.set_defaults(handler=run_status, json=False)
    esub = p.add_subparsers(dest="engine_command", metavar="ACTION")
    for name, handler, text in (
        ("start", run_start, "start the engine service and wait until it is ready"),
        ("restart", run_restart, "stop the engine service, then start it with the current settings"),
        ("stop", run_stop, "stop the engine service and its worker processes"),
        ("status", run_status, "is it running, where, with which model and adapters"),
    ):
        q = esub.add_parser(name, parents=[common], help=text)
        q.add_argument("--json", action="store_true", help="print JSON")
        q.set_defaults(handler=handler)
    q = esub.add_parser("logs", parents=[common], help="the engine service's log (.studio/engine.log)")
    q.add_argument("-n", "--lines", type=int, default=40, help="lines to show (default 40)")
    q.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (ctrl+c ends)")
    q.set_defaults(handler=run_logs)


def _check_backend(ws: Workspace) -> None:
    if ws.settings.engine.backend != "vllm":
        raise UserError(
            f"{ws.settings_path}: engine.backend is {ws.settings.engine.backend!r}: "
            "the engine service runs only for the 'vllm' backend"
        )


def progress_printer(msg: str, frac: float | None) -> None:
    """Engine start progress on a terminal's stderr; silent otherwise (scripts, --json)."""
    if sys.stderr.isatty():
        pct = f" {frac * 100:3.0f}%" if frac is not None else ""
        print(f"\r\033[K{msg}{pct}", end="\n" if frac == 1.0 else "", file=sys.stderr, flush=True)


def _describe(ws: Workspace) -> dict:
    from persona_studio.engine import service

    st, info = service.state(ws)
    out: dict = {"state": st, "log": str(service.log_path(ws))}
    if info is None:
        return out
    out.update(pid=info.pid, url=info.base_url, model=info.model, max_lora_rank=info.max_lora_rank,
               uptime_s=round(time.time() - info.started_at, 1),
               current_settings=info.fingerprint == service.wanted_fingerprint(ws))
    if st == "ready":
        import httpx

        try:
            r = httpx.get(f"{info.base_url}/models", timeout=5,
                          headers={"Authorization": f"Bearer {service.api_key(ws)}"})
            out["adapters"] = sorted(m["id"] for m in r.json()["data"] if m.get("parent"))
        except (httpx.HTTPError, ValueError, KeyError, TypeError, UserError):
            out["adapters"] = None
    return out


def _print(d: dict, as_json: bool) -> None:
    if as_json:
        print(json_text(d))
        return
    if d["state"] == "stopped":
        print(f"engine service: stopped (log: {d['log']})")
        return
    print(f"engine service: {d['state']}, pid {d['pid']}, {d['url']}")
    print(f"  model {d['model']}, up {d['uptime_s']:.0f} s, max LoRA rank {d['max_lora_rank']}")
    if not d["current_settings"]:
        print("  started with other settings than settings.jsonc now has: `persona-studio engine restart`")
    if d.get("adapters") is not None:
        print(f"  adapters loaded: {', '.join(d['adapters']) or 'none'}")
    print(f"  log: {d['log']}")


def run_status(args: argparse.Namespace, ws: Workspace) -> int:
    _print(_describe(ws), args.json)
    return 0


def run_start(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.engine import service

    _check_backend(ws)
    service.ensure(ws, None if args.json else progress_printer)
    _print(_describe(ws), args.json)
    return 0


def run_stop(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.engine import service

    was = service.stop(ws)
    if args.json:
        print(json.dumps({"stopped": was}))
    else:
        print("engine service stopped" if was else "engine service: not running")
    return 0


def run_restart(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.engine import service

    _check_backend(ws)
    service.stop(ws)
    return run_start(args, ws)


def run_logs(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.engine import service

    for line in service.tail(ws, max(1, args.lines)):
        print(line)
    if not args.follow:
        return 0
    path = service.log_path(ws)
    pos = path.stat().st_size if path.exists() else 0
    try:
        while True:
            time.sleep(0.5)
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size < pos:
                pos = 0
            if size > pos:
                with open(path, "rb") as fh:
                    fh.seek(pos)
                    sys.stdout.write(fh.read(size - pos).decode("utf-8", "replace"))
                    sys.stdout.flush()
                pos = size
    except KeyboardInterrupt:
        return 0


def add_keep_engine_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keep-engine", action="store_true",
        help="engine.backend vllm: leave the engine service running when this command started it",
    )


class command_engine:  # noqa: N801 - used as a context manager, reads like a function
    """The engine a headless command uses: `with command_engine(ws, args) as engine: ...`.

    For the vllm backend it is the running engine service when there is one (left running);
    otherwise one is started for the command and stopped at the end unless --keep-engine.
    Progress goes to stderr on a terminal only, so `--json` stdout stays clean.
    """

    def __init__(self, ws: Workspace, args: argparse.Namespace | None = None):
        self.ws = ws
        self.keep = bool(getattr(args, "keep_engine", False))
        self.engine = None

    def __enter__(self):  # -> Engine
        from persona_studio.engine import make_engine

        self.engine = make_engine(self.ws)
        try:
            self.engine.start(progress_printer)
        except BaseException:
            self._close()
            raise
        return self.engine

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        eng, self.engine = self.engine, None
        if eng is None:
            return
        if getattr(eng, "started_service", False) and not self.keep:
            eng.stop_service()  # type: ignore[attr-defined]
        else:
            eng.close()
