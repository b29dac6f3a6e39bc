"""How much the WeChat importer costs over a bare `csv` parse of the same file.

    python bench/parse_bench.py [--n 1000000] [--csv FILE]

Writes an N-message WeChat-style CSV (multi-line messages, mixed types, a group chat) into a
temp dir (or takes --csv), then times (a) iterating `csv.reader` over it, (b) `ingest.read`
(one Message per row, for callers that want records), (c) `ingest.read_blocks`, the Arrow
Blocks the importer stores, and (d) a whole `import_files` into a fresh workspace (hash,
parse, store, commit). The ratios to (a) are the numbers to watch; absolute speeds depend on
the machine. The first timing in a process also pays pyarrow's import (~0.1 s), so (c) runs
after (b) has loaded it, and (d) runs last.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persona_studio.bulk import paused_gc  # noqa: E402
from persona_studio.importer import import_files  # noqa: E402
from persona_studio.ingest import ReadStats, read, read_blocks  # noqa: E402
from persona_studio.workspace import Workspace  # noqa: E402

HEADER = ["id", "MsgSvrID", "type_name", "is_sender", "talker", "room_name", "msg", "src", "CreateTime", "is_forward"]
TYPES = ["文本"] * 8 + ["图片", "动画表情", "引用回复", "语音"]
LINES = ["在吗？", "晚上一起吃饭吗", "好啊，几点？", "see you at 7", "哈哈哈哈", "我知道一家新开的火锅店\n就在公司楼下"]


def write_csv(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    talkers = [f"wxid_{i:04d}" for i in range(20)]
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        t = 1_700_000_000
        for i in range(n):
            t += rng.randint(1, 90)
            tm = time.gmtime(t)
            sender = 1 if rng.random() < 0.4 else 0
            w.writerow([
                i + 1, 7_000_000_000_000_000_000 + i, rng.choice(TYPES), sender,
                "wxid_me" if sender else rng.choice(talkers), "12345678@chatroom", rng.choice(LINES), "",
                f"{tm.tm_year}-{tm.tm_mon:02d}-{tm.tm_mday:02d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}", 0,
            ])


def time_import(path: Path, root: Path) -> tuple[float, dict]:
    """Seconds for `import_files` of `path` into a fresh workspace under `root`, and its summary."""
    ws = Workspace.init(root / "ws")
    persona = ws.personas_dir / "bench"
    persona.mkdir(parents=True)
    (persona / "persona.jsonc").write_text('{"name": "Bench", "system_prompt": "."}', encoding="utf-8")
    t0 = time.perf_counter()
    summary = import_files(ws, "bench", [path], me="me")
    return time.perf_counter() - t0, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="messages to generate (default 1,000,000)")
    parser.add_argument("--csv", type=Path, help="time this WeChat CSV instead of generating one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.csv or Path(tmp) / "bench.csv"
        if args.csv is None:
            t0 = time.perf_counter()
            write_csv(path, args.n)
            print(f"wrote {args.n:,} messages, {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f}s")

        t0 = time.perf_counter()
        with open(path, encoding="utf-8", newline="") as f:
            rows = sum(1 for _ in csv.reader(f)) - 1
        bare = time.perf_counter() - t0

        stats = ReadStats()
        t0 = time.perf_counter()
        count = sum(1 for _ in read(path, stats=stats))
        ours = time.perf_counter() - t0

        t0 = time.perf_counter()
        with paused_gc():  # as the importer runs it
            in_blocks = sum(len(b) for b in read_blocks(path))
        blocks = time.perf_counter() - t0

        imported, summary = time_import(path, Path(tmp))

    assert rows == count == in_blocks == summary["stored"], (rows, count, in_blocks, summary["stored"], stats)
    print(f"csv.reader bare    : {bare:7.2f}s  {rows / bare:12,.0f} msg/s")
    print(f"ingest.read        : {ours:7.2f}s  {count / ours:12,.0f} msg/s  (bad={stats.bad}, encoding={stats.encoding})")
    print(f"ingest.read_blocks : {blocks:7.2f}s  {in_blocks / blocks:12,.0f} msg/s")
    print(f"import_files       : {imported:7.2f}s  {summary['stored'] / imported:12,.0f} msg/s")
    print(f"ratio to bare: read {ours / bare:.2f}x, read_blocks {blocks / bare:.2f}x, import {imported / bare:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
