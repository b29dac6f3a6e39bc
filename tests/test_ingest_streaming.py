"""read() streams: memory stays flat however big the export is.

Two allocators to watch: tracemalloc sees Python objects (and numpy arrays), not Arrow's
memory pool, where the WeChat reader keeps its chunks and columns; the pool's use is polled
after every message."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pytest

from persona_studio.ingest import ReadStats, read, wechat

MB = 1 << 20


def _peak_while_iterating(path: Path) -> tuple[int, int, ReadStats]:
    """(tracemalloc peak, Arrow pool peak above the start, stats) of one read of `path`.

    The first message is read once beforehand, so the modules the reader imports on first use
    (pyarrow's are megabytes) are loaded: a one-off cost, not one that grows with the file."""
    messages = read(path)
    next(messages)
    messages.close()
    stats = ReadStats()
    arrow_start = arrow_peak = pa.total_allocated_bytes()
    tracemalloc.start()
    try:
        count = 0
        for _ in read(path, stats=stats):
            count += 1
            arrow_peak = max(arrow_peak, pa.total_allocated_bytes())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == stats.read
    return peak, arrow_peak - arrow_start, stats


def test_big_wechat_csv_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wechat, "CHUNK_BYTES", 1 << 20)  # the pool holds a few chunks' worth
    path = tmp_path / "big.csv"
    body = ("长消息" * 300 + "\n" + "long message " * 100).replace('"', "")
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime\n")
        while f.tell() < 50 * MB:
            for _ in range(1000):
                n += 1
                f.write(f'{n},{n},文本,{n % 2},wxid_{n % 7},room,"{body} {n}",,2024-05-{1 + n % 28:02d} 10:{n % 60:02d}:00\n')
    size = path.stat().st_size
    peak, arrow_peak, stats = _peak_while_iterating(path)
    assert stats.read == n and stats.bad == 0
    assert peak < size / 20, f"peak {peak / MB:.1f} MB for a {size / MB:.0f} MB file"
    assert 0 < arrow_peak < size / 5, f"Arrow pool peak {arrow_peak / MB:.1f} MB for a {size / MB:.0f} MB file"


def test_big_telegram_json_streams(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    text = "Сегодня было северное сияние! " * 40
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write('{\n "name": "Big Chat",\n "type": "personal_chat",\n "id": 1,\n "messages": [\n')
        while f.tell() < 30 * MB:
            n += 1
            msg = {"id": n, "type": "message", "date": "2023-01-05T12:00:01", "date_unixtime": str(1672920001 + n),
                   "from": "Anna", "from_id": "user1", "text": [text, {"type": "bold", "text": str(n)}]}
            f.write(("" if n == 1 else ",\n") + json.dumps(msg, ensure_ascii=False, indent=1))
        f.write("\n ]\n}\n")
    size = path.stat().st_size
    peak, arrow_peak, stats = _peak_while_iterating(path)
    assert stats.read == n and stats.bad == 0
    assert peak < size / 20, f"peak {peak / MB:.1f} MB for a {size / MB:.0f} MB file"
    assert arrow_peak < size / 20, f"Arrow pool peak {arrow_peak / MB:.1f} MB for a {size / MB:.0f} MB file"


@pytest.mark.parametrize("kind", ["alpaca", "sharegpt"])
def test_a_dataset_written_on_one_line_streams(tmp_path: Path, kind: str) -> None:
    """`json.dump(data, f)` writes a whole dataset on one line: it must stream like any JSON
    array, not be read whole as the first line of a would-be JSONL file (1.2 GB for 50 MB)."""
    path = tmp_path / f"{kind}.json"
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        while f.tell() < 20 * MB:
            n += 1
            rec = ({"instruction": f"question {n} " * 10, "input": "", "output": f"answer {n} " * 20}
                   if kind == "alpaca" else
                   {"conversations": [{"from": "human", "value": f"question {n} " * 10},
                                      {"from": "gpt", "value": f"answer {n} " * 20}]})
            f.write(("" if n == 1 else ",") + json.dumps(rec))
        f.write("]")
    assert path.read_bytes().count(b"\n") == 0
    size = path.stat().st_size
    peak, _, stats = _peak_while_iterating(path)
    assert stats.read == 2 * n and stats.bad == 0
    assert peak < size / 20, f"peak {peak / MB:.1f} MB for a {size / MB:.0f} MB file"


def test_a_jsonl_line_over_the_limit_is_skipped_unread_and_later_lines_keep_their_numbers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_studio.ingest import generic

    monkeypatch.setattr(generic, "LINE_LIMIT", 2000)
    rec = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    huge = {"conversations": [{"from": "human", "value": "x" * 5000}, {"from": "gpt", "value": "y"}]}
    lines = ["", json.dumps(rec), json.dumps(huge), json.dumps(rec), "{not json", json.dumps(rec)]
    path = tmp_path / "data.jsonl"
    path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    stats = ReadStats()
    messages = list(read(path, stats=stats))
    assert len(messages) == 6 and stats.bad == 2  # three good records of two turns each
    assert stats.bad_examples == [f"{path}:3: line longer than 2,000 characters (skipped)",
                                  f"{path}:5: bad JSON (Expecting property name enclosed in double quotes)"]
