"""What incremental lore indexing saves over rebuilding the index.

    python bench/lore_reindex.py [--files 40] [--paragraphs 12]

Writes FILES lore files into a temp workspace, then times (a) a full index from nothing,
(b) a re-index with nothing changed and (c) a re-index after editing one file, and prints
each time and its ratio to (a). The embedder is loaded before the clock starts so the
numbers compare indexing work, not model loading. Ratios are the numbers to watch.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persona_studio.persona.card import Persona, save_persona  # noqa: E402
from persona_studio.persona.lore import LoreStore  # noqa: E402
from persona_studio.workspace import Workspace  # noqa: E402

WORDS = ("tea kettle river lantern ferry robot solder scone library window autumn market harbour "
         "ledger chapter oolong jasmine workshop sprocket octopus notebook festival").split()


def paragraph(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 70))).capitalize() + "."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--paragraphs", type=int, default=12)
    args = ap.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        save_persona(ws, Persona(id="bench", name="Bench"))
        lore = ws.persona_dir("bench") / "lore"
        lore.mkdir()
        for i in range(args.files):
            body = "\n\n".join(paragraph(rng) for _ in range(args.paragraphs))
            (lore / f"f{i:03d}.md").write_text(f"# File {i}\n\n{body}\n", encoding="utf-8")
        LoreStore(ws)._embed(["warm-up"])  # the model is cached per process: load it off the clock

        def timed(label: str) -> float:
            start = time.perf_counter()
            report = LoreStore(ws).index()
            took = time.perf_counter() - start
            print(f"{label:<28} {took:8.3f} s   {report.chunks_added:5d} chunks embedded")
            return took

        full = timed("full index")
        same = timed("re-index, nothing changed")
        (lore / "f000.md").write_text("# File 0\n\nChanged.\n", encoding="utf-8")
        one = timed("re-index, one file changed")
        print(f"ratio nothing-changed / full: {same / full:.3f}")
        print(f"ratio one-changed / full:     {one / full:.3f}")


if __name__ == "__main__":
    main()
