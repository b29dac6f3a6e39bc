"""Time to first paint of the studio vs a bare Textual app, in the same script.

Each run is a fresh interpreter (imports are most of start-up), driven headless with
`App.run_test()`; "first paint" is the moment the first stage screen is mounted and has a
size. Prints both medians and the ratio.

    python bench/tui_startup.py [--runs 5] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

STUDIO = """
import asyncio, time
t0 = time.perf_counter()
from persona_studio.tui.app import create_app
async def main():
    app = create_app({ws!r})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.screen.size.width == 80
        print(time.perf_counter() - t0)
asyncio.run(main())
"""

BARE = """
import asyncio, time
t0 = time.perf_counter()
from textual.app import App
from textual.widgets import Footer, Static
class Bare(App):
    def compose(self):
        yield Static("hello")
        yield Footer()
async def main():
    app = Bare()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        print(time.perf_counter() - t0)
asyncio.run(main())
"""


def timed(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workspace", default=None, help="default: a fresh `init` workspace")
    args = ap.parse_args()
    ws = args.workspace
    if ws is None:
        ws = str(Path(tempfile.mkdtemp()) / "ws")
        subprocess.run([sys.executable, "-m", "persona_studio", "init", ws], check=True, capture_output=True)
    bare = [timed(BARE) for _ in range(args.runs)]
    studio = [timed(STUDIO.format(ws=ws)) for _ in range(args.runs)]
    b, s = statistics.median(bare), statistics.median(studio)
    print(f"bare textual app : {b * 1000:7.0f} ms (median of {args.runs})")
    print(f"persona-studio   : {s * 1000:7.0f} ms (median of {args.runs})")
    print(f"ratio            : {s / b:7.2f}x")


if __name__ == "__main__":
    main()
