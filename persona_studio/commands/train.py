"""`train`, `jobs`: background (Q)LoRA training jobs from the command line.

    persona-studio train --persona ID [--method sft|dpo|orpo] [--resume] [--wait] [--json]
    persona-studio jobs [list] [--json]
    persona-studio jobs show ID [--json] [--log N]
    persona-studio jobs cancel ID
    persona-studio jobs wait ID [--timeout S]     exit 0 done, 1 failed, 3 cancelled
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from persona_studio.termsafe import json_text
from persona_studio.workspace import Workspace

EXIT = {"done": 0, "failed": 1, "cancelled": 3}


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("train", parents=[common], help="train a persona's adapter as a background job")
    p.add_argument("--persona", required=True, metavar="ID", help="persona id (directory under personas/)")
    p.add_argument("--resume", action="store_true", help="resume the persona's failed/cancelled job from its checkpoint")
    p.add_argument("--method", choices=("sft", "dpo", "orpo"), default="sft",
                   help="sft (default) = on the samples; dpo/orpo = on preference pairs, from the current adapter"
                        " (settings: train_pref_args)")
    p.add_argument("--wait", action="store_true", help="block until the job ends (exit status as `jobs wait`)")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    p.set_defaults(handler=run_train)

    p = sub.add_parser("jobs", parents=[common], help="list, show, cancel or wait for training jobs")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_list)
    jobs_sub = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    q = jobs_sub.add_parser("list", parents=[common], help="every job with its state (default)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(handler=run_list)
    q = jobs_sub.add_parser("show", parents=[common], help="one job: status, last metrics, log tail")
    q.add_argument("job_id")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.add_argument("--log", type=int, default=10, metavar="N", help="log lines to show (default 10)")
    q.set_defaults(handler=run_show)
    q = jobs_sub.add_parser("cancel", parents=[common], help="stop a job gracefully (it saves a checkpoint)")
    q.add_argument("job_id")
    q.set_defaults(handler=run_cancel)
    q = jobs_sub.add_parser("wait", parents=[common], help="block until a job ends; non-zero unless it is done")
    q.add_argument("job_id")
    q.add_argument("--timeout", type=float, default=None, metavar="S", help="give up after S seconds (exit 124)")
    q.set_defaults(handler=run_wait)


def run_train(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.train import jobs

    job = jobs.start_job(ws, args.persona, resume=args.resume, method=args.method)
    if args.json:
        print(json_text(job.to_dict()))
    else:
        verb = "resumed" if args.resume else "started"
        print(f"{verb} job {job.job_id} ({job.state}); follow it with `persona-studio jobs show {job.job_id}`")
    if args.wait:
        return _wait(ws, job.job_id, None, quiet=args.json)
    return 0


def run_list(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.train import jobs

    found = jobs.list_jobs(ws)
    if args.json:
        print(json_text([j.to_dict() for j in found]))
        return 0
    if not found:
        print("no training jobs yet (start one with `persona-studio train --persona ID`)")
    for j in found:
        steps = f"{j.step}/{j.total_steps}" if j.total_steps else "-"
        tail = f"  {j.error}" if j.error else (f"  -> {Path(j.adapter).name}" if j.adapter else "")
        print(f"{j.job_id:<40} {j.persona_id:<16} {j.state:<10} {steps:>9}{tail}")
    return 0


def run_show(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.train import jobs

    job = jobs.get_job(ws, args.job_id)
    metrics = jobs.read_metrics(job.job_dir)
    log = jobs.tail_log(job.job_dir, args.log)
    if args.json:
        print(json_text({**job.to_dict(), "last_metrics": metrics[-1] if metrics else None, "log": log}))
        return 0
    for k, v in job.to_dict().items():
        print(f"{k:>16}: {v}")
    if metrics:
        m = metrics[-1]
        print(f"{'last step':>16}: loss {m.get('loss'):.4f}  lr {m.get('lr'):.2e}  {m.get('tokens_per_s', 0):.0f} tok/s")
        if m.get("reward_margin") is not None:  # a DPO/ORPO job
            print(f"{'preference':>16}: margin {m['reward_margin']:.4f}  accuracy {m.get('accuracy', 0):.2f}"
                  f"  logp chosen {m.get('logps_chosen', 0):.2f}  rejected {m.get('logps_rejected', 0):.2f}")
    for line in log:
        print(f"  | {line}")
    return 0


def run_cancel(args: argparse.Namespace, ws: Workspace) -> int:
    from persona_studio.train import jobs

    job = jobs.cancel_job(ws, args.job_id)
    print(f"job {job.job_id}: cancel requested ({job.state})")
    return 0


def run_wait(args: argparse.Namespace, ws: Workspace) -> int:
    return _wait(ws, args.job_id, args.timeout)


def _wait(ws: Workspace, job_id: str, timeout: float | None, quiet: bool = False) -> int:
    from persona_studio.train import jobs

    job = jobs.get_job(ws, job_id)
    tty = sys.stderr.isatty() and not quiet
    deadline = None if timeout is None else time.monotonic() + timeout
    while job.state not in jobs.FINAL:
        if deadline is not None and time.monotonic() > deadline:
            print(f"job {job.job_id}: still {job.state} after {timeout:g} s", file=sys.stderr)
            return 124
        if tty:
            print(f"\r{job.job_id}: {job.state} step {job.step}/{job.total_steps}   ", end="", file=sys.stderr)
        time.sleep(1.0)
        job = jobs.get_job(ws, job.job_id)
    if tty:
        print(file=sys.stderr)
    if job.state == "failed":
        print(f"persona-studio: job {job.job_id} failed: {job.error}", file=sys.stderr)
        return EXIT["failed"]
    if not quiet:
        print(f"job {job.job_id}: {job.state}" + (f" -> {job.adapter}" if job.adapter else ""))
    return EXIT[job.state]
