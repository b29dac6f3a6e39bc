"""A seeded mutator over the sample files, and the loops that feed its output to every importer,
the card reader and the importer's store transaction. Run by tests/test_fuzz.py in a child
process under an address-space limit, so "never unbounded memory" is enforced, not hoped for:
a runaway case dies of MemoryError there and is reported like any other failure.

    python -m tests.fuzz_helpers KIND SEED CASES WORKDIR   ->  one JSON list of failures on stdout
"""

from __future__ import annotations

import json
import random
import resource
import sqlite3
import sys
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

DATA = Path(__file__).parent / "data" / "ingest"

# Bytes that mean something to one of the parsers: JSON/CSV syntax, escapes, BOMs, NULs, cut
# UTF-8/GBK sequences, UTF-16 halves, terminal escapes, numbers out of every range.
TOKENS = [
    b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b"\n", b"\r", b"\r\n", b"\x00", b"\t",
    b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xe4\xbd", b"\xc3", b"\x81\x30", b"\x1b[31m",
    b"null", b"true", b"-0", b"1e999999", b"-1e-999999", b"NaN", b"9" * 400, b"0x1F", b"\"\"",
    b'{"a":' * 50, b"[" * 200, b"]" * 200, b'"\\u0000"', b'"\\ud800"', b"\\u", b"\xed\xa0\x80",
    b"12/31/23, 9:41 PM - ", b"[31/12/2023, 21:41:05] ", b"2024-10-04 11:42:10", b"99/99/99, 99:99 PM - x: ",
    b"\xe2\x80\x8e", b"\xe2\x80\xaf", b"<Media omitted>", b"1,1,\xe6\x96\x87\xe6\x9c\xac,1,a,,", b"\"\"\"",
    b"0000-00-00T00:00:00", b"9999999999999999999999", b"-9223372036854775809", b"1e308", b"\x7f",
]


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    """1-4 random edits of `data`; returns the new bytes and what was done (for the report)."""
    ops: list[str] = []
    for _ in range(rng.randint(1, 4)):
        n = len(data)
        at = rng.randint(0, n)
        op = rng.randrange(8)
        if op == 0 and n:
            i = rng.randrange(n)
            data = data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]
            ops.append(f"flip@{i}")
        elif op == 1 and n:
            end = min(n, at + rng.randint(1, 64))
            data = data[:at] + data[end:]
            ops.append(f"del@{at}:{end}")
        elif op == 2:
            blob = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            data = data[:at] + blob + data[at:]
            ops.append(f"ins@{at}+{len(blob)}")
        elif op == 3 and n:
            start = rng.randrange(n)
            piece = data[start:start + rng.randint(1, 256)]
            data = data[:at] + piece * rng.randint(1, 8) + data[at:]
            ops.append(f"dup@{at}")
        elif op == 4:
            data = data[:at]
            ops.append(f"cut@{at}")
        elif op == 5 and n:
            i = rng.randrange(n)
            data = data[:i] + rng.choice(TOKENS) + data[i + 1:]
            ops.append(f"swap@{i}")
        else:
            token = rng.choice(TOKENS)
            data = data[:at] + token * rng.choice((1, 1, 2, 50)) + data[at:]
            ops.append(f"tok@{at}")
    return data, ops


def random_input(rng: random.Random) -> tuple[bytes, list[str]]:
    """Not derived from a sample: raw bytes, or a soup of syntax tokens."""
    if rng.random() < 0.5:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 600))), ["random-bytes"]
    return b"".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 120))), ["token-soup"]


def samples(workdir: Path) -> list[Path]:
    """Every sample file (WhatsApp locales too), a WhatsApp ZIP export, and DPO/KTO datasets."""
    files = sorted(p for p in DATA.rglob("*") if p.is_file())
    zipped = workdir / "whatsapp_export.zip"  # read in place
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(DATA / "whatsapp_android.txt", "WhatsApp Chat with Ana.txt")
    dpo = workdir / "dpo.jsonl"
    dpo.write_text("\n".join(json.dumps({"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"})
                             for i in range(4)) + "\n")
    kto = workdir / "kto.jsonl"
    kto.write_text("\n".join(json.dumps({"prompt": f"q{i // 2}", "completion": f"a{i}", "label": i % 2 == 0})
                             for i in range(4)) + "\n")
    return [*files, zipped, dpo, kto]


def _failure(kind: str, case: int, source: str, ops: list[str], exc: BaseException) -> dict:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
    return {"kind": kind, "case": case, "source": source, "ops": ops, "error": f"{type(exc).__name__}: {exc}"[:300],
            "traceback": tb[-3000:]}


def _cases(seed: int, n: int, sources: list[bytes], names: list[str]):
    rng = random.Random(seed)
    for case in range(n):
        if rng.random() < 0.1:
            data, ops = random_input(rng)
            yield case, "random", data, ops, rng
        else:
            i = rng.randrange(len(sources))
            data, ops = mutate(sources[i], rng)
            yield case, names[i], data, ops, rng


def fuzz_importers(seed: int, n: int, workdir: Path, counts: Counter[str]) -> list[dict]:
    """Every case through format detection and the import path's reader (read_blocks), and a
    share through the Message path (`read`) and a forced format: a UserError or a result."""
    from persona_studio import ingest
    from persona_studio.errors import UserError

    files = samples(workdir)
    sources, names = [p.read_bytes() for p in files], [p.name for p in files]
    failures: list[dict] = []
    target = workdir / "case.bin"
    for case, source, data, ops, rng in _cases(seed, n, sources, names):
        target.write_bytes(data)
        fmt = rng.choice(ingest.FORMATS) if rng.random() < 0.15 else "auto"
        try:
            try:
                ingest.detect(target)
            except UserError:
                pass
            rows = sum(len(block) for block in ingest.read_blocks(target, fmt))
            if rng.random() < 0.3:
                for _ in ingest.read(target, fmt):
                    pass
            counts["read" if rows else "empty"] += 1
        except UserError as exc:
            counts["refused"] += 1
            if "\n" in str(exc):
                failures.append(_failure("importer", case, source, [*ops, fmt], ValueError(f"two lines: {exc}")))
        except BaseException as exc:  # noqa: BLE001 - anything else is the bug being hunted
            failures.append(_failure("importer", case, source, [*ops, fmt], exc))
    return failures


def _card_sources() -> list[tuple[str, bytes]]:
    from persona_studio.persona import png

    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {
        "name": "Ada", "description": "keeper", "first_mes": "Tea?", "alternate_greetings": ["hi"],
        "tags": ["a"], "character_book": {"entries": [{"keys": ["lamp"], "content": "Fresnel"}]},
        "extensions": {"talkativeness": "0.8", "x": {"y": [1, 2]}}, "creation_date": 1700000000}}
    v3 = {**card, "spec": "chara_card_v3", "spec_version": "3.0"}
    text = json.dumps(card).encode()
    image = png.with_text_chunks(png.default_image("Ada", size=8), [("chara", card), ("ccv3", v3)], "x")
    return [("card.json", text), ("v1.json", b'{"name": "V1", "description": "d", "talkativeness": 0.3}'),
            ("card.png", image)]


def fuzz_cards(seed: int, n: int, workdir: Path, counts: Counter[str]) -> list[dict]:
    """Every case through read_card_file and from_card, as `persona import` does."""
    from persona_studio.errors import UserError
    from persona_studio.persona.card import from_card, read_card_file

    named = _card_sources()
    sources, names = [b for _, b in named], [name for name, _ in named]
    failures: list[dict] = []
    for case, source, data, ops, _rng in _cases(seed, n, sources, names):
        target = workdir / ("case.png" if source.endswith(".png") else "case.json")
        target.write_bytes(data)
        try:
            from_card(read_card_file(target), None, str(target))
            counts["read"] += 1
        except UserError as exc:
            counts["refused"] += 1
            if "\n" in str(exc):
                failures.append(_failure("card", case, source, ops, ValueError(f"two lines: {exc}")))
        except BaseException as exc:  # noqa: BLE001
            failures.append(_failure("card", case, source, ops, exc))
    return failures


def _dump(db_path: Path) -> list[str]:
    conn = sqlite3.connect(db_path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def fuzz_store(seed: int, n: int, workdir: Path, counts: Counter[str]) -> list[dict]:
    """Cases through the real importer into a real store: a refused import leaves the store
    exactly as it was (contents compared statement by statement)."""
    from persona_studio.errors import UserError
    from persona_studio.importer import import_files
    from persona_studio.workspace import Workspace

    ws = Workspace.init(workdir / "ws")
    (ws.personas_dir / "ana").mkdir(parents=True)
    (ws.personas_dir / "ana" / "persona.jsonc").write_text('{"name": "Ana"}')
    ws.store().close()
    from persona_studio import ingest

    files = samples(workdir)
    sources, names = [p.read_bytes() for p in files], [p.name for p in files]
    # --me as a user would give it: a speaker of the unmutated file (so imports can succeed).
    speakers: dict[str, list[str | None]] = {}
    for p in files:
        try:
            speakers[p.name] = [s for s, _ in ingest.speakers(p)][:2]
        except UserError:
            speakers[p.name] = []
    failures: list[dict] = []
    for case, source, data, ops, rng in _cases(seed, n, sources, names):
        target = workdir / f"case{case}.txt"
        target.write_bytes(data)
        before = _dump(ws.db_path)
        me = rng.choice([*speakers.get(source, []), None, "Ana"])
        try:
            import_files(ws, "ana", [target], me)
            counts["imported"] += 1
        except UserError as exc:
            counts["refused"] += 1
            after = _dump(ws.db_path)
            if after != before:
                failures.append(_failure("store", case, source, ops, AssertionError(f"store changed by a refused import ({exc})")))
        except BaseException as exc:  # noqa: BLE001
            failures.append(_failure("store", case, source, ops, exc))
        target.unlink()
    return failures


KINDS: dict[str, Callable[[int, int, Path, Counter[str]], list[dict]]] = {
    "importers": fuzz_importers, "cards": fuzz_cards, "store": fuzz_store,
}


def main(argv: list[str]) -> int:
    kind, seed, n, workdir = argv[0], int(argv[1]), int(argv[2]), Path(argv[3])
    limit = 3 << 30  # far above what any case needs; a runaway parser hits MemoryError instead
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    counts: Counter[str] = Counter()
    failures = KINDS[kind](seed, n, workdir, counts)
    # VmHWM, not ru_maxrss: on Linux ru_maxrss keeps the forking parent's size across exec.
    with open("/proc/self/status") as fh:
        peak_mb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) // 1024
    print(json.dumps({"failures": failures, "peak_mb": peak_mb, "counts": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
