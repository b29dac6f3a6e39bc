"""Benchmark: the exact PII check (clean/pii.py) on texts its pre-check flags, all distinct, so
no cache hit helps, against the same check without phone numbers (the regex kinds only) in the
same run: what libphonenumber costs, and what skipping written dates saves.

    PYTHONPATH=. python bench/pii_bench.py [--n 4000]

Make-dataset runs this check only on the texts the RE2 pre-check flags (about 2% of chat in
bench/make_dataset_bench.py); everything else never gets here.
"""

from __future__ import annotations

import argparse
import random
import sys
import time


def texts(n: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {
        "phone numbers": [f"我的号码是138{rng.randint(0, 10**8 - 1):08d}，回头联系" if i % 2 else
                          f"call {rng.randint(200, 999)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d} ok"
                          for i in range(n)],
        "order numbers": [f"订单号 2024{rng.randint(0, 10**10 - 1):010d} 已发货" for _ in range(n)],
        "dates and times": [f"{rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
                            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} 见" for _ in range(n)],
        "e-mail and links": [f"mail u{i}@example.com or see https://example.com/{i}" for i in range(n)],
    }


def per_text_us(redactor: object, batch: list[str]) -> float:
    apply = redactor.apply  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for t in batch:
        apply(t)
    return (time.perf_counter() - t0) / len(batch) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4000, help="distinct texts per kind (default 4000)")
    args = ap.parse_args()

    from persona_studio.clean.pii import DEFAULT_REGIONS, Redactor

    full = Redactor({})
    no_phone = Redactor({"phone": "keep"})
    full.apply("warm up 138 1234 5678 x@y.com")  # imports and metadata, once
    print(f"{'flagged texts (distinct)':26}{'regex kinds µs':>16}{'+ phones µs':>14}{'ratio':>8}")
    for name, batch in texts(args.n, seed=7).items():
        base = per_text_us(no_phone, batch)
        full._phone_cache.clear()
        with_phones = per_text_us(full, batch)
        print(f"{name:26}{base:16.1f}{with_phones:14.1f}{with_phones / base:7.1f}x")
    print(f"(phone regions: {', '.join(DEFAULT_REGIONS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
