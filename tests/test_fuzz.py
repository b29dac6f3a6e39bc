"""Fuzzing (issue 10, point 7): mutated sample files and random bytes through every importer,
the card reader and the importer's store transaction. Each case ends in a result or one
UserError line — never another exception, never more than the child's 3 GB address space —
and a refused import leaves the store exactly as it was. Seeds are fixed, so a failure names a
case that replays (`python -m tests.fuzz_helpers KIND SEED CASES DIR`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_fuzz(kind: str, seed: int, cases: int, workdir: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz_helpers", kind, str(seed), str(cases), str(workdir)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def report(result: dict) -> str:
    return "\n\n".join(f"case {f['case']} from {f['source']} {f['ops']}: {f['error']}\n{f['traceback']}"
                       for f in result["failures"][:5])


@pytest.mark.parametrize(("kind", "cases", "outcomes"), [
    ("importers", 4000, ("read", "refused")),
    ("cards", 2000, ("read", "refused")),
    ("store", 400, ("imported", "refused")),
])
def test_fuzz_never_a_traceback(tmp_path: Path, kind: str, cases: int, outcomes: tuple[str, str]) -> None:
    result = run_fuzz(kind, 20261130, cases, tmp_path)
    assert result["failures"] == [], report(result)
    # The mutator must reach both sides: inputs that still parse and inputs that are refused.
    counts = result["counts"]
    assert sum(counts.values()) == cases
    assert all(counts.get(o, 0) >= cases // 50 for o in outcomes), counts
    assert result["peak_mb"] < 1024, result["peak_mb"]
