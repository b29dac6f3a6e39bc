"""Benchmark: import + make-dataset of a big WeChat-style CSV, against the bare `csv` parse.

    PYTHONPATH=. python bench/make_dataset_bench.py [--n 1000000] [--keep]

Writes a synthetic export (a one-to-one chat and a group chat, Chinese and English text, ~5%
stickers/images/recalls, some multi-line messages, phone numbers, URLs, emails and ordinary
numbers) under bench/out/, then times, in this one process:
  baseline  csv.reader over the file, touching every row (the least any importer must do)
  import    persona-studio's importer: sniff, parse, normalise, one transaction into SQLite
  clean     make-dataset: sessionize, PII, blocked words, dedup, token estimate, upsert samples
and, for scale, one floor: storing the samples make-dataset produced, and nothing else, into a
fresh store (the same INSERT, no cleaning) — work any design that keeps samples in SQLite does.
pyarrow is imported before the clocks start (as `csv` is for the baseline); its one-off import
time is printed separately.
Goal: import + clean under 20 s, within 3x the baseline, peak RSS under 1 GB.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

HEADER = ["id", "MsgSvrID", "type_name", "is_sender", "talker", "room_name", "msg", "src", "CreateTime"]
TEXTS = [
    "你好呀", "在吗？", "今天好累啊", "晚上一起吃饭吧", "哈哈哈哈", "好的，没问题", "我马上到",
    "周末去哪里玩", "这个价格是199元，还挺便宜", "明天下午3点开会", "收到", "你看那个新闻了吗",
    "ok see you at 7", "lol that's hilarious", "Did you finish the report?", "我在地铁上，等会儿说",
    "帮我带杯咖啡，谢谢", "2024年的计划做好了吗", "我们有12个人参加", "下雨了记得带伞",
]
PII = ["我的手机是13812345678", "邮箱 zhang.san@example.com", "链接 https://example.com/a?b=1 看看",
       "打这个 +1 415 555 2671", "服务器 192.168.1.10 挂了", "wifi密码是多少"]
KINDS = ["图片", "动画表情", "语音", "撤回消息", "系统通知"]


def generate(path: Path, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    t = datetime(2023, 1, 1, 8, 0, 0)
    members = ["张三", "李四", "王五", "Carol"]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(1, n + 1):
            # mostly seconds-to-minutes apart, sometimes hours (new conversations)
            t += timedelta(seconds=rng.choice((5, 20, 40, 90, 200)) if rng.random() < 0.93 else rng.randint(600, 20000))
            group = (i // 500) % 4 == 3
            sender = 1 if rng.random() < 0.45 else 0
            r = rng.random()
            if r < 0.05:
                kind, msg = rng.choice(KINDS), "[媒体]"
            elif r < 0.07:
                kind, msg = "文本", rng.choice(PII)
            elif r < 0.09:
                kind, msg = "文本", rng.choice(TEXTS) + "\n" + rng.choice(TEXTS)
            else:
                kind, msg = "文本", rng.choice(TEXTS) + (" " + rng.choice(TEXTS) if rng.random() < 0.3 else "")
            talker = rng.choice(members) if group else "李四"
            w.writerow([i, 10_000_000 + i, kind, sender, talker, "茶话会" if group else "", msg, "",
                        t.strftime("%Y-%m-%d %H:%M:%S")])


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class Timer:
    """Wall time and this process's CPU time: on a shared, loaded machine the CPU time is the
    steadier number (wall time includes waiting for a core)."""

    def __enter__(self) -> Timer:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.w0, time.process_time() - self.c0


def bare_parse(path: Path) -> int:
    n = 0
    with open(path, encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh)
        next(rows)
        for row in rows:
            if row:
                n += 1
    return n


def store_floor(ws: object, path: Path) -> Timer:
    """Time inserting the finished samples, read back from `ws`, into a new store the way
    make-dataset's writer does (one INSERT ... SELECT over json_each, see clean/pipeline.py)."""
    import numpy as np
    import pyarrow as pa

    from persona_studio.clean.pipeline import _INSERT_ROWS, sample_rows
    from persona_studio.store import Store

    with ws.store() as store:  # type: ignore[attr-defined]
        rows = [tuple(r) for r in store.query("SELECT hash, turns, n_turns, n_tokens, meta FROM samples ORDER BY id")]
        run = store.query("SELECT persona_id, run_id, system, created_at FROM samples LIMIT 1")[0]
    hashes, turns, n_turns, n_tokens, metas = zip(*rows, strict=True)
    distinct = sorted(set(metas))
    payload = sample_rows(list(hashes), pa.array(turns, pa.string()), np.array(n_turns), np.array(n_tokens),
                        distinct, np.array([distinct.index(m) for m in metas]))
    from persona_studio.bulk import paused_gc

    with Store.open(path) as fresh:
        fresh.conn.execute("PRAGMA cache_size = -65536")  # as make-dataset runs it
        with fresh.tx() as db:
            db.execute("INSERT INTO dataset_runs (id, persona_id) VALUES (?, 'bench')", (run[1],))
        with Timer() as t, paused_gc(), fresh.tx() as db:
            db.execute(_INSERT_ROWS, (*tuple(run), *payload))
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="messages to generate (default 1,000,000)")
    ap.add_argument("--keep", action="store_true", help="keep the generated CSV and workspace")
    args = ap.parse_args()

    from persona_studio.clean.pipeline import make_dataset
    from persona_studio.importer import import_files
    from persona_studio.workspace import Workspace

    # The app imports pyarrow where it first needs it; here it is loaded before the clocks
    # start, as `csv` is for the baseline, and its one-off cost is printed on its own.
    with Timer() as t_modules:
        import pyarrow.compute  # noqa: F401
        import pyarrow.csv  # noqa: F401
        import pyarrow.ipc  # noqa: F401

    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    csv_path = out / f"wechat_{args.n}.csv"
    if not csv_path.exists():
        t0 = time.perf_counter()
        generate(csv_path, args.n)
        print(f"generated {csv_path} ({csv_path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
    base_mb = peak_mb()

    with Timer() as base:
        n = bare_parse(csv_path)
    tmp = Path(tempfile.mkdtemp(prefix="ps-bench-", dir=out))
    try:
        ws = Workspace.init(tmp / "ws")
        (ws.personas_dir / "bench").mkdir(parents=True)
        (ws.personas_dir / "bench" / "persona.jsonc").write_text(
            json.dumps({"name": "Bench", "system_prompt": "You are Bench."}), encoding="utf-8")
        ws.settings_path.write_text('{make_dataset: {blocked_words: ["密码", "password", "违禁"]}}', encoding="utf-8")
        ws = Workspace.open(ws.root)

        with Timer() as t_imp:
            imp = import_files(ws, "bench", [csv_path], "me")
        with Timer() as t_md:
            md = make_dataset(ws, "bench")
        peak = peak_mb()  # of the timed part (the floor below builds its rows in Python)
        t_floor = store_floor(ws, tmp / "floor.db")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    wall, cpu = t_imp.wall + t_md.wall, t_imp.cpu + t_md.cpu
    print(f"messages            {n:,} (stored {imp['stored']:,}, bad {imp['bad']:,}); "
          f"{md['samples']['total']:,} samples, redacted {md['redacted']}, blocked {md['blocked']['messages']:,}")
    print(f"{'':20}{'wall s':>8}{'cpu s':>8}{'msg/s (wall)':>14}")
    for name, t in (("baseline csv parse", base), ("import", t_imp), ("make-dataset", t_md)):
        print(f"{name:20}{t.wall:8.2f}{t.cpu:8.2f}{n / t.wall:14,.0f}")
    print(f"{'end to end':20}{wall:8.2f}{cpu:8.2f}{n / wall:14,.0f}   (goal < 20 s)")
    print(f"ratio vs bare parse  wall {wall / base.wall:.1f}x, cpu {cpu / base.cpu:.1f}x   (goal <= 3x)")
    print(f"floor: store samples{t_floor.wall:8.2f}{t_floor.cpu:8.2f}   ({t_floor.wall / base.wall:.1f}x the bare parse "
          "by itself: inserting make-dataset's output into a fresh store)")
    print(f"(not timed above: importing pyarrow once, {t_modules.wall:.2f} s)")
    print(f"peak RSS            {peak:,.0f} MB (before the timed part: {base_mb:,.0f} MB; goal < 1024 MB)")
    print(f"load average        {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
