"""Training jobs: create, start (detached), list, cancel, wait, and the files the TUI reads.

    .studio/jobs/<job_id>/spec.json      the resolved TrainSpec
    .studio/jobs/<job_id>/data.jsonl     the conversations it trains on (a snapshot of the store)
    .studio/jobs/<job_id>/status.json    state, pid, error, step, updated_at (heartbeat), atomic
    .studio/jobs/<job_id>/metrics.jsonl  one line per logging step
    .studio/jobs/<job_id>/train.log      the worker's stdout/stderr
    .studio/jobs/<job_id>/checkpoints/   the last checkpoint (step-NNNNNN/)

Everything that can be refused is refused here, before a process starts. The worker runs in its
own session, so it outlives the TUI and the SSH connection; jobs queue on a lock file so one
trains at a time, first queued first served.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from persona_studio.errors import UserError
from persona_studio.eval import heldout
from persona_studio.train import data as data_mod
from persona_studio.train import spec as spec_mod
from persona_studio.train.identity import identity_samples, load_card
from persona_studio.workspace import Workspace, atomic_write, check_persona_id

ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled")
LOCK_NAME = ".train.lock"
STARTUP_GRACE_S = 60.0  # a queued job whose worker never wrote its pid is dead after this

# Workers started by this process: polling them reaps zombies, which would otherwise look alive.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class JobInfo:
    job_id: str
    persona_id: str
    state: str
    job_dir: str
    pid: int | None = None
    error: str | None = None
    step: int = 0
    total_steps: int = 0
    checkpoint_step: int = 0
    adapter: str | None = None
    created_at: str = ""
    updated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- status file ---------------------------------------------------------------------------------
def read_status(job_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((job_dir / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: a hostile, deeply nested file
        return {}


def write_status(job_dir: Path, **changes: Any) -> dict[str, Any]:
    status = read_status(job_dir)
    status.update(changes)
    status["updated_at"] = now_iso()
    atomic_write(job_dir / "status.json", json.dumps(status, ensure_ascii=False, indent=1) + "\n")
    return status


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        # A recycled pid belongs to some other program: then our worker is gone.
        return b"persona_studio.train.worker" in (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return True  # no /proc (not Linux): trust kill(0)


def job_status(job_dir: str | Path) -> dict[str, Any]:
    """status.json, corrected when its worker died without saying so (SIGKILL, OOM, reboot)."""
    job_dir = Path(job_dir)
    status = read_status(job_dir)
    if status.get("state") in ACTIVE:
        pid = status.get("pid")
        if pid and not pid_alive(pid):
            status["state"] = "failed"
            status["error"] = f"worker process {pid} ended without a final status (killed?)"
        elif not pid and _age_s(status.get("queued_at")) > STARTUP_GRACE_S:
            status["state"] = "failed"
            status["error"] = "worker process never started (see train.log)"
    from persona_studio.train.loop import checkpoint_step

    status["checkpoint_step"] = checkpoint_step(job_dir)
    return status


def _age_s(iso: str | None) -> float:
    if not iso:
        return float("inf")
    return (datetime.now(UTC) - datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)).total_seconds()


def _info(job_dir: Path) -> JobInfo:
    s = job_status(job_dir)
    return JobInfo(
        job_id=job_dir.name,
        persona_id=s.get("persona_id", ""),
        state=s.get("state", "failed"),
        job_dir=str(job_dir),
        pid=s.get("pid"),
        error=s.get("error"),
        step=s.get("step", 0),
        total_steps=s.get("total_steps", 0),
        checkpoint_step=s.get("checkpoint_step", 0),
        adapter=s.get("adapter"),
        created_at=s.get("created_at", ""),
        updated_at=s.get("updated_at", ""),
    )


# -- listing and reading (the TUI's API) ---------------------------------------------------------------
def list_jobs(ws: Workspace) -> list[JobInfo]:
    """Every job, oldest first."""
    if not ws.jobs_dir.is_dir():
        return []
    dirs = [d for d in ws.jobs_dir.iterdir() if d.is_dir() and (d / "status.json").exists()]
    return sorted((_info(d) for d in dirs), key=lambda j: (j.created_at, j.job_id))


def get_job(ws: Workspace, job_id: str) -> JobInfo:
    jobs = list_jobs(ws)
    exact = [j for j in jobs if j.job_id == job_id]
    found = exact or [j for j in jobs if job_id in j.job_id]
    if len(found) != 1:
        what = "no job" if not found else f"{len(found)} jobs match"
        raise UserError(f"{ws.jobs_dir}: {what} {job_id!r} (see `persona-studio jobs`)")
    return found[0]


def read_metrics(job_dir: str | Path, since_line: int = 0) -> list[dict[str, Any]]:
    """Metric lines from `since_line` on (complete lines only: the worker may be mid-write)."""
    path = Path(job_dir) / "metrics.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    lines = text.split("\n")[:-1]  # the part after the last newline is not finished yet
    out = []
    for line in lines[since_line:]:
        try:
            out.append(json.loads(line))
        except (ValueError, RecursionError):
            out.append({})  # keep line numbering stable for callers counting lines
    return out


def last_metrics(job_dir: str | Path) -> dict[str, Any] | None:
    """The newest complete metrics line, read from the end of the file (cheap for long runs)."""
    try:
        with open(Path(job_dir) / "metrics.jsonl", "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            lines = fh.read().decode("utf-8", "replace").split("\n")[:-1]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError, RecursionError):
        return None


def tail_log(job_dir: str | Path, n: int = 50) -> list[str]:
    path = Path(job_dir) / "train.log"
    if n <= 0:
        return []
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            return fh.read().decode("utf-8", "replace").splitlines()[-n:]
    except OSError:
        return []


# -- creating and starting ------------------------------------------------------------------------------
def create_job(ws: Workspace, persona_id: str) -> Path:
    """Validate everything, then write the job directory (spec, data snapshot, status queued)."""
    check_persona_id(persona_id)
    card = load_card(ws, persona_id)
    t = ws.settings.train_sft_args
    base = spec_mod.check_base_model(ws.settings.model.name_or_path, ws.root)
    if t.lora_rank not in spec_mod.VLLM_LORA_RANKS:
        raise spec_mod.TrainError(
            f"{ws.settings_path}: train_sft_args.lora_rank: {t.lora_rank} cannot be served by vLLM"
            f" (use one of {', '.join(map(str, spec_mod.VLLM_LORA_RANKS))})"
        )
    store = ws.store()
    try:
        samples = data_mod.select_samples(store, persona_id)
    finally:
        store.close()
    if not samples:
        raise spec_mod.TrainError(
            f"{ws.db_path}: persona {persona_id!r} has no usable training samples"
            " (accepted ones, or pending ones when nothing was scored; each needs an assistant reply)"
        )
    device, n_gpus, dtype = spec_mod.resolve_hardware(ws.settings.model.dtype)
    spec_mod.check_memory(base, t.quantization, dtype, device)

    # The persona's held-out set (eval/heldout.py) never trains; training's eval loss is measured on it.
    parts = heldout.split(samples, ws.settings.eval)
    train, held = parts.train, (parts.held if t.eval_ratio > 0 else [])
    ident = identity_samples(card, t.identity_samples, t.seed)
    rows = [
        {"split": split, "source": src, "messages": data_mod.to_messages(s, card.system_prompt)}
        for split, src, group in (("train", "store", train), ("train", "identity", ident), ("eval", "store", held))
        for s in group
    ]
    job_id = _new_job_id(ws, persona_id)
    spec = spec_mod.TrainSpec(
        job_id=job_id,
        persona_id=persona_id,
        workspace=str(ws.root),
        base_model=base,
        trust_remote_code=ws.settings.model.trust_remote_code,
        device=device,
        num_gpus=n_gpus,
        dtype=dtype,
        train=t,
        n_samples=len(samples),
        n_identity=len(ident),
        n_eval=len(held),
        created_at=now_iso(),
    )
    spec_mod.validate(spec, str(ws.settings_path))
    job_dir = ws.jobs_dir / job_id
    job_dir.mkdir(parents=True)
    data_mod.write_jsonl(job_dir / "data.jsonl", rows)
    from persona_studio.eval import samples as samples_mod  # what the worker asks while it trains

    samples_mod.write_probes(ws, job_dir, card.system_prompt,
                             [t["content"] for s in train for t in s["turns"] if t["role"] == "assistant"])
    spec_mod.save(spec, job_dir / "spec.json")
    write_status(job_dir, job_id=job_id, persona_id=persona_id, state="queued", pid=None, error=None,
                 created_at=spec.created_at, queued_at=spec.created_at, step=0, total_steps=0, adapter=None)
    return job_dir


def _new_job_id(ws: Workspace, persona_id: str) -> str:
    base = f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{persona_id}"
    job_id, n = base, 1
    while (ws.jobs_dir / job_id).exists():
        n += 1
        job_id = f"{base}-{n}"
    return job_id


def start_job(ws: Workspace, persona_id: str, resume: bool = False, method: str = "sft") -> JobInfo:
    """Start a training job in the background (or resume the persona's interrupted one).
    `method` dpo|orpo trains on the persona's preference pairs from its current adapter (pref_jobs.py)."""
    check_persona_id(persona_id)
    with _start_lock(ws, persona_id):
        return _start_locked(ws, persona_id, resume, method)


@contextmanager
def _start_lock(ws: Workspace, persona_id: str) -> Iterator[None]:
    """One `train` start at a time per persona, across processes: the check for an active job
    and the queued status that the next check sees happen under this lock, so of two starts at
    the same moment one queues and the other is told so. flock, not a lock file made with
    O_EXCL: the kernel drops it when the holder dies, so a killed start leaves nothing stale."""
    import fcntl

    locks = ws.state_dir / "locks"  # not in jobs/: that holds job directories only
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / f"train-start-{persona_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the other start waits here for the first to queue its job
        yield
    finally:
        os.close(fd)


def _start_locked(ws: Workspace, persona_id: str, resume: bool, method: str) -> JobInfo:
    mine = [j for j in list_jobs(ws) if j.persona_id == persona_id]
    active = [j for j in mine if j.state in ACTIVE]
    if active:
        raise UserError(f"persona {persona_id!r}: job {active[-1].job_id} is already {active[-1].state}")
    if resume:
        # Only the latest job: resuming an older one would publish an adapter older than the current.
        if not mine or mine[-1].state not in ("failed", "cancelled"):
            last = f" (its latest job {mine[-1].job_id} is {mine[-1].state})" if mine else ""
            raise UserError(f"persona {persona_id!r}: no failed or cancelled job to resume{last}")
        job_dir = Path(mine[-1].job_dir)
        spec = spec_mod.load(job_dir / "spec.json")  # refuse a damaged job before starting it
        spec_mod.check_base_model(spec.base_model)  # ...one whose base model is gone from this machine
        from persona_studio.train.loop import latest_checkpoint, read_checkpoint

        ckpt = latest_checkpoint(job_dir)
        if ckpt is not None:
            read_checkpoint(ckpt)  # ...or one whose checkpoint is damaged or holds more than data
    elif method != "sft":
        from persona_studio.train.pref_jobs import create_pref_job

        job_dir = create_pref_job(ws, persona_id, method)
    else:
        job_dir = create_job(ws, persona_id)
    launch(job_dir)
    return _info(job_dir)


def launch(job_dir: Path) -> int:
    """Start the worker detached: its own session, no terminal, output to train.log."""
    write_status(job_dir, state="queued", pid=None, error=None, queued_at=now_iso(), started_at=None, finished_at=None)
    env = dict(os.environ)
    # The worker must import this very package, installed or not.
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    with open(job_dir / "train.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "persona_studio.train.worker", str(job_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=job_dir,
            env=env,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


# -- control ------------------------------------------------------------------------------------------
def cancel_job(ws: Workspace, job_id: str) -> JobInfo:
    """SIGTERM the worker (it checkpoints and exits as cancelled); a job not yet started is just marked."""
    job = get_job(ws, job_id)
    if job.state in FINAL:
        raise UserError(f"job {job.job_id}: already {job.state}")
    job_dir = Path(job.job_dir)
    if job.pid and pid_alive(job.pid):
        try:
            os.killpg(job.pid, signal.SIGTERM)  # the worker leads its own session and process group
        except (ProcessLookupError, PermissionError):
            os.kill(job.pid, signal.SIGTERM)
    else:
        write_status(job_dir, state="cancelled", error=None)
    return _info(job_dir)


def wait_job(ws: Workspace, job_id: str, timeout: float | None = None, poll_s: float = 0.5) -> JobInfo:
    job = get_job(ws, job_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    while job.state not in FINAL:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job.job_id} still {job.state} after {timeout:.0f} s")
        time.sleep(poll_s)
        job = _info(Path(job.job_dir))
    return job


def queue_ahead(ws: Workspace, job_dir: Path) -> list[str]:
    """Queued jobs with a live worker that were queued before this one (FIFO order)."""
    me = read_status(job_dir).get("queued_at", "")
    ahead = []
    for j in list_jobs(ws):
        if j.job_id == job_dir.name or j.state != "queued":
            continue
        if read_status(Path(j.job_dir)).get("queued_at", "") < me:
            ahead.append(j.job_id)
    return ahead
