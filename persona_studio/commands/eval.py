"""`eval`: how close each adapter comes to the real person, on the persona's held-out set.

    persona-studio eval --persona ID [--adapters base,v0001,...|current|all] [--limit N] [--json]
    persona-studio eval runs --persona ID [--json]

Runs in the foreground with a progress bar on a terminal's stderr; Ctrl-C cancels (the run is
recorded as cancelled, no scores are kept). `--json` prints only the result JSON on stdout: the
libraries' logging and warnings go to .studio/eval.log (vLLM logs in the engine service's own log).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from persona_studio.termsafe import json_text


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("eval", parents=[common], help="score adapters against the persona's held-out conversations")
    p.add_argument("--persona", required=True, metavar="ID")
    p.add_argument("--adapters", default="all", metavar="LIST",
                   help="comma-separated: base, current, v0001, ... or all (default: base and every version)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate on at most N held-out conversations")
    p.add_argument("--judge", action="store_true",
                   help="also ask the LLM judge (make_dataset.judge) which reply is more like the person: "
                        "each adapter's win rate vs the base model, with a bootstrap interval")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON on stdout")
    p.add_argument("--runs", action="store_true", help="list this persona's eval runs instead of running one")
    from persona_studio.commands.engine import add_keep_engine_arg

    add_keep_engine_arg(p)
    p.set_defaults(handler=run_eval_cmd)


class _Bar:
    """One line on the terminal per stage: a bar when the total is known."""

    LABELS = {"loss": "held-out loss", "engine": "starting engine", "generate": "generating", "judge": "judging"}

    def __init__(self) -> None:
        self.stage = ""
        self.out: TextIO = sys.stderr

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage and self.stage:
            print(file=self.out)
        self.stage = stage
        width = 30
        fill = int(width * done / total) if total else 0
        print(f"\r{self.LABELS.get(stage, stage):<16} [{'#' * fill}{'.' * (width - fill)}] {done}/{total}",
              end="", file=self.out, flush=True)

    def close(self) -> None:
        if self.stage:
            print(file=self.out, flush=True)
            self.stage = ""


@contextlib.contextmanager
def _quiet(log_path: Any) -> Iterator[None]:
    """Libraries' own chatter during the run goes to `.studio/eval.log` through their logging
    configuration, so `--json` stdout holds the result alone and an error is the one line cli.py
    prints. vLLM runs in the engine service, which has its own log; nothing here touches file
    descriptors (that broke vLLM's start and the TUI's terminal size before)."""
    import logging
    import warnings

    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Only for this process (restored below): child processes such as a vLLM server keep their
    # own defaults (vLLM's offline API divides by tqdm's elapsed time, which a disabled bar zeroes).
    quiet_env = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    saved_env = {k: os.environ.get(k) for k in quiet_env}
    for var, value in quiet_env.items():
        os.environ.setdefault(var, value)
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    # warnings.warn from torch/peft/bitsandbytes become log records of 'py.warnings'.
    loggers = [logging.getLogger(n) for n in ("py.warnings", "transformers", "peft", "bitsandbytes", "httpx")]
    saved = [(lg, lg.handlers[:], lg.propagate) for lg in loggers]
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            for lg in loggers:
                lg.handlers = [handler]
                lg.propagate = False
            yield
    finally:
        for var, old in saved_env.items():
            if old is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = old
        logging.captureWarnings(False)
        for lg, handlers, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate
        handler.close()


def run_eval_cmd(args: argparse.Namespace, ws: Any) -> int:
    from persona_studio.commands.engine import command_engine
    from persona_studio.errors import UserError
    from persona_studio.eval import report
    from persona_studio.eval.run import run_eval

    if args.runs:
        found = report.runs(ws, args.persona)
        if args.json:
            print(json_text(found))
        for r in [] if args.json else found:
            print(f"{r['id']:>5}  {r['state']:<9} {r['started_at']}  {','.join(r['adapters'])}"
                  + (f"  {r['error']}" if r["error"] else ""))
        return 0
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit: must be at least 1, got {args.limit}")
    bar = _Bar() if sys.stderr.isatty() else None
    try:
        with _quiet(ws.state_dir / "eval.log"):
            try:
                result = run_eval(ws, args.persona, args.adapters, args.limit, progress=bar,
                                  engine_cm=lambda: command_engine(ws, args), judge=args.judge)
            finally:
                if bar:
                    bar.close()
    except KeyboardInterrupt:
        print("persona-studio: eval cancelled (no scores kept)", file=sys.stderr)
        return 130
    if args.json:
        print(json_text(result))
        return 0
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    cols = list(report.METRIC_LABELS)
    print(f"{'':2}{'adapter':<10}" + "".join(f"{report.METRIC_LABELS[c]:>16}" for c in cols))
    for a in result["adapters"]:
        cells = [report.fmt(c, a.get(c)) + ("*" if result["best"].get(c) == a["label"] else " ") for c in cols]
        print(f"{a['rank']:<2}{a['label']:<10}" + "".join(f"{c:>16}" for c in cells))
    for a in result["adapters"]:
        if a.get("judge_win_rate") is not None:
            print(f"judge: {a['label']} beats base in {100 * a['judge_win_rate']:.0f}% of {a['judge_n']} "
                  f"(95% CI {100 * a['judge_ci_low']:.0f}-{100 * a['judge_ci_high']:.0f}%)")
    print(f"(* best; {result['n_heldout']} held-out conversations) report: {result['reports']['markdown']}")
    return 0
