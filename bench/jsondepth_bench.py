"""What the JSON nesting guard (persona_studio/jsondepth.py) costs a Telegram import.

    python bench/jsondepth_bench.py [--messages 300000]

Writes a Telegram-like result.json (text entities, quotes, brackets and backslashes inside
strings), then times in the same run: (a) ijson's C `items` over the file, the parse the guard
sits in front of; (b) the guard alone over the same 16 KiB chunks; (c) the speakers() path end
to end, which includes the guard. Prints MB/s and the guard's time as a ratio of (a) and (c).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persona_studio.ingest import jsonstream, speakers  # noqa: E402
from persona_studio.jsondepth import DepthGuard  # noqa: E402


def write_export(path: Path, n: int) -> None:
    messages = []
    for i in range(n):
        text: object = f'msg {i}: "quoted" [brackets] {{braces}} back\\slash 中文 {"x" * (i % 40)}'
        if i % 3 == 0:
            text = [text, {"type": "link", "text": f"http://example.com/{i}?a=[1]"}, " tail"]
        messages.append({"id": i, "type": "message", "date": "2024-01-01T00:00:00", "date_unixtime": "1704067200",
                         "from": f"user{i % 7}", "from_id": f"user{i % 7}", "text": text,
                         "text_entities": [{"type": "plain", "text": "x"}]})
    path.write_text(json.dumps({"name": "bench", "type": "personal_chat", "id": 1, "messages": messages},
                               ensure_ascii=False), encoding="utf-8")


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.json"
        write_export(path, args.messages)
        data = path.read_bytes()
        mb = len(data) / 1e6

        def ijson_only() -> None:
            import io

            import ijson

            for _ in ijson.items(io.BytesIO(data), "messages.item", use_float=True, buf_size=jsonstream.BUF_SIZE):
                pass

        def guard_only() -> None:
            guard = DepthGuard()
            step = jsonstream.BUF_SIZE
            for i in range(0, len(data), step):
                guard.feed(data[i:i + step])

        guard_only()  # numpy imported before the clocks
        t_parse, t_guard = timed(ijson_only), timed(guard_only)
        t_speakers = timed(lambda: speakers(path))
        print(f"file: {mb:.1f} MB, {args.messages:,} messages")
        print(f"(a) ijson items            {t_parse:7.2f} s  {mb / t_parse:7.1f} MB/s")
        print(f"(b) depth guard            {t_guard:7.2f} s  {mb / t_guard:7.1f} MB/s")
        print(f"(c) speakers() end to end  {t_speakers:7.2f} s  {mb / t_speakers:7.1f} MB/s")
        print(f"guard / (a) = {t_guard / t_parse:.2f}; guard / (c) = {t_guard / t_speakers:.2f}")


if __name__ == "__main__":
    main()
