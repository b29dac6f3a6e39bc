"""Drive the real `persona-studio` binary in a real terminal (tmux, 80x24) and read the screen."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")


def _binary() -> str:
    exe = shutil.which("persona-studio")
    assert exe, "the persona-studio console script is not installed (run the README's install command)"
    return exe


@pytest.fixture
def tmux_session():
    assert TMUX, "tmux is not installed: apt-get install tmux"
    name = f"ps-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run([TMUX, "kill-session", "-t", name], capture_output=True)


def capture(name: str) -> str:
    return subprocess.run(
        [TMUX, "capture-pane", "-p", "-t", name], capture_output=True, text=True, check=False
    ).stdout


def wait_for(name: str, *texts: str, timeout: float = 30.0) -> str:
    """Wait until every one of `texts` is on screen at once: widgets paint in separate
    refreshes, so seeing one of them says nothing about the others (a slow CI box showed
    the stage body before the status line)."""
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = capture(name)
        if all(text in screen for text in texts):
            return screen
        time.sleep(0.2)
    missing = [text for text in texts if text not in screen]
    raise AssertionError(f"{missing!r} never appeared; screen was:\n{screen}")


def start(name: str, cmd: str, size: tuple[int, int] = (80, 24)) -> None:
    subprocess.run(
        [TMUX, "new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]),
         f"{cmd}; echo EXIT=$?; sleep 30"],
        check=True,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "TERM": "xterm-256color", "HOME": "/tmp"},
    )


def test_real_binary_paints_switches_stage_and_quits(tmux_session: str, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert subprocess.run([_binary(), "init", str(ws)], capture_output=True).returncode == 0
    start(tmux_session, f"{_binary()} --workspace {ws}")
    # The status line names the workspace and engine; the footer lists the stage keys.
    wait_for(tmux_session, "Import chat exports", "ws", "engine not started", "1 Import")
    subprocess.run([TMUX, "send-keys", "-t", tmux_session, "3"], check=True)
    wait_for(tmux_session, "no job selected")  # the Train screen
    subprocess.run([TMUX, "send-keys", "-t", tmux_session, "C-q"], check=True)
    wait_for(tmux_session, "EXIT=0")


def test_real_binary_reports_bad_settings_and_exits_2(tmux_session: str, tmp_path: Path) -> None:
    (tmp_path / "settings.jsonc").write_text('{\n  "infer_args": {"tempreture": 1}\n}')
    start(tmux_session, f"{_binary()} --workspace {tmp_path}")
    screen = wait_for(tmux_session, "cannot open this workspace")
    flat = " ".join(line.strip(" ┃") for line in screen.splitlines())  # the panel wraps long lines
    assert "did you mean 'temperature'" in flat.replace("  ", " ")
    assert "Import" not in screen.splitlines()[-1]  # stage keys are hidden: there is no workspace
    subprocess.run([TMUX, "send-keys", "-t", tmux_session, "q"], check=True)
    screen = wait_for(tmux_session, "EXIT=2")
    assert "Traceback" not in screen
