"""`python -m persona_studio.train.worker JOB_DIR`: the detached process that runs one job.

It owns the job's status file: queued (waiting for the train lock) → running → done | failed |
cancelled, with a heartbeat (`updated_at`) every few seconds. SIGTERM asks for a graceful stop:
the loop finishes its optimizer step, saves a checkpoint and the job ends as cancelled. Any error
ends it as failed with a one-line reason (the traceback goes to train.log); the last checkpoint
stays, so `persona-studio train --persona ID --resume` can go on from it.

With several GPUs the worker stays the job's manager and runs the loop itself under
`accelerate launch` (`--inner` mode: one process per GPU, rank 0 writes the files).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from persona_studio.errors import UserError
from persona_studio.train import jobs
from persona_studio.train import spec as spec_mod
from persona_studio.workspace import Workspace

HEARTBEAT_S = 2.0
EXIT_CANCELLED = 3


class Worker:
    def __init__(self, job_dir: Path):
        self.job_dir = job_dir
        self.stop = threading.Event()
        self.lock = threading.Lock()  # status writes come from the main and the heartbeat thread
        self.finished = False

    def status(self, **changes: object) -> None:
        # Progress comes from the metrics file, which every mode (one process or one per GPU) writes.
        last = jobs.last_metrics(self.job_dir)
        progress = {"step": last["step"], "total_steps": last["total_steps"]} if last else {}
        with self.lock:
            jobs.write_status(self.job_dir, **progress, **changes)

    def on_signal(self, signum: int, _frame: object) -> None:
        print(f"worker: got signal {signum}; stopping at the next step", flush=True)
        self.stop.set()

    def run(self) -> int:
        if jobs.read_status(self.job_dir).get("state") == "cancelled":
            return 0  # cancelled before this process got going
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal going away is no reason to stop
        self.status(state="queued", pid=os.getpid(), error=None)
        beat = threading.Thread(target=self._beat, daemon=True)
        beat.start()
        try:
            spec = spec_mod.load(self.job_dir / "spec.json")
            lock_fd = self.wait_for_slot(spec)
            if lock_fd is None:
                self.finish("cancelled")
                return 0
            self.status(state="running", started_at=jobs.now_iso())
            print(f"worker: training {spec.persona_id} on {spec.device} ({spec.dtype}, {spec.train.quantization})", flush=True)
            result = self.train(spec)
            if result == "done":
                adapter = self.publish(spec)
                self.finish("done", adapter=str(adapter))
            else:
                self.finish("cancelled")
            return 0
        except UserError as exc:
            print(f"worker: error: {exc}", flush=True)
            self.finish("failed", error=str(exc))
        except BaseException as exc:  # noqa: BLE001 - every failure must land in the status file
            traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0]
            self.finish("failed", error=f"{type(exc).__name__}: {first}"[:500])
        return 1

    def _beat(self) -> None:
        while not self.finished:
            time.sleep(HEARTBEAT_S)
            if not self.finished:
                self.status()

    def finish(self, state: str, **extra: object) -> None:
        self.finished = True
        self.status(state=state, finished_at=jobs.now_iso(), **extra)
        print(f"worker: {state}", flush=True)

    def wait_for_slot(self, spec: spec_mod.TrainSpec) -> int | None:
        """Hold the workspace's train lock (first queued, first served); None if cancelled meanwhile."""
        ws = _workspace(spec)
        ws.jobs_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(ws.jobs_dir / jobs.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        while not self.stop.is_set():
            if not jobs.queue_ahead(ws, self.job_dir):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd  # kept open until exit; the kernel drops the lock even on SIGKILL
                except BlockingIOError:
                    pass
            time.sleep(0.5)
        os.close(fd)
        return None

    def train(self, spec: spec_mod.TrainSpec) -> str:
        if spec.method != "sft":  # DPO / ORPO: one process, same status, checkpoints and cancel
            from persona_studio.train import pref_loop

            return pref_loop.train(spec, self.job_dir, stop=self.stop.is_set)
        if spec.num_gpus > 1:
            return self.train_multi_gpu(spec)
        from persona_studio.eval.samples import Sampler
        from persona_studio.train import loop

        return loop.train(spec, self.job_dir, stop=self.stop.is_set, sampler=Sampler(self.job_dir))

    def train_multi_gpu(self, spec: spec_mod.TrainSpec) -> str:
        cmd = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(spec.num_gpus),
            # dtype and precision are the spec's business, not accelerate's
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--module", "persona_studio.train.worker", str(self.job_dir), "--inner",
        ]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        while proc.poll() is None:
            if self.stop.wait(1.0):
                proc.send_signal(signal.SIGTERM)
                proc.wait()
                break
        rc = proc.returncode
        if rc == 0:
            return "done"
        if rc == EXIT_CANCELLED or self.stop.is_set():
            return "cancelled"
        err = self.job_dir / "error.txt"
        raise RuntimeError(err.read_text(encoding="utf-8").strip() if err.exists() else f"accelerate exited with {rc}")

    def publish(self, spec: spec_mod.TrainSpec) -> Path:
        """Copy the adapter into personas/<id>/adapters/<version>/ and make it current."""
        from persona_studio import adapters
        from persona_studio.workspace import atomic_write

        ws = _workspace(spec)
        src = self.job_dir / "adapter"
        cfg = json.loads((src / "adapter_config.json").read_text(encoding="utf-8"))
        problem = adapters.servable_problem(src, cfg)
        if problem:  # never make current an adapter the engine would refuse
            raise spec_mod.TrainError(f"{src}: not servable by vLLM: {problem}")
        dest = adapters.new_version_dir(ws, spec.persona_id)
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copyfile(src / name, dest / name)
        atomic_write(dest / "train_spec.json", spec.to_json())
        adapters.set_current(ws, spec.persona_id, dest.name)
        return dest


def _workspace(spec: spec_mod.TrainSpec) -> Workspace:
    """The job's workspace, without re-reading settings.jsonc: the spec already holds every setting
    the job uses, and an edit to the file since the job was queued must not break it."""
    from persona_studio import settings

    return Workspace(Path(spec.workspace), settings.defaults())


def run_inner(job_dir: Path) -> int:
    """One rank under `accelerate launch`: just the loop; the parent worker keeps the status."""
    from persona_studio.train import loop

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        result = loop.train(spec_mod.load(job_dir / "spec.json"), job_dir, stop=stop.is_set)
    except BaseException as exc:  # noqa: BLE001
        traceback.print_exc()
        if os.environ.get("RANK", "0") == "0":
            (job_dir / "error.txt").write_text(f"{type(exc).__name__}: {exc}".splitlines()[0], encoding="utf-8")
        return 1
    return 0 if result == "done" else EXIT_CANCELLED


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="persona_studio.train.worker")
    ap.add_argument("job_dir", type=Path)
    ap.add_argument("--inner", action="store_true", help="run as one rank under accelerate launch")
    args = ap.parse_args(argv)
    if args.inner:
        return run_inner(args.job_dir)
    return Worker(args.job_dir.resolve()).run()


if __name__ == "__main__":
    sys.exit(main())
