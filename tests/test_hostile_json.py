"""Deeply nested JSON (issue 10, point 4): every JSON reader refuses it with one line and exit 2,
in bounded memory. The CLI runs in a subprocess under an address-space limit and reports its
own peak RSS, so a regression fails the test instead of taking the machine down."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from persona_studio.cli import main
from persona_studio.jsondepth import MAX_DEPTH, DepthGuard, TooDeep, check
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import add_persona
from tests.test_data_cli import dump

N = 100_000  # levels: 200 KB of brackets

# Runs the CLI, then prints its own peak RSS (KiB) as the last stderr line. RLIMIT_AS stops a
# runaway parser at 3 GB (the unguarded reader reached ~20 GB before the OOM killer).
RUNNER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from persona_studio.cli import main
rc = main(sys.argv[1:])
# VmHWM is this program's own peak: ru_maxrss keeps the parent's size from before exec on Linux
# (a pytest that has loaded models made every child look 2.4 GB).
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print("maxrss", hwm, file=sys.stderr)
sys.exit(rc)
"""


def run_cli(*argv: str) -> tuple[int, list[str], int]:
    """(exit code, stderr lines without the RSS line, peak RSS in MiB)."""
    proc = subprocess.run([sys.executable, "-c", RUNNER, *argv], capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("maxrss "), proc.stderr[-2000:]
    return proc.returncode, lines[:-1], int(lines[-1].split()[1]) // 1024


def telegram_one_chat(path: Path) -> Path:
    text = "[" * N + "]" * N
    path.write_text('{"name": "x", "type": "personal_chat", "id": 1, "messages": [{"id": 1, "type": "message", '
                    '"date": "2024-01-01T00:00:00", "from": "a", "from_id": "user1", "text": ' + text + "}]}")
    return path


def telegram_full_export(path: Path) -> Path:
    # The account export goes through jsonstream.walk (Python events), not ijson's C items.
    deep = '{"a": ' * N + "1" + "}" * N
    path.write_text('{"about": "x", "personal_information": {}, "chats": {"list": [{"name": "c", '
                    '"messages": [{"id": 1, "type": "message", "date": "2024-01-01T00:00:00", '
                    '"from_id": "user1", "text": "hi", "extra": ' + deep + "}]}]}}")
    return path


def openai_jsonl(path: Path) -> Path:
    good = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    deep = '{"messages": [{"role": "user", "content": ' + "[" * N + "]" * N + "}]}"
    path.write_text(good + "\n" + deep + "\n")
    return path


def sharegpt_array(path: Path) -> Path:
    path.write_text('[{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": '
                    + "[" * N + "]" * N + "}]}]")
    return path


def discord_channel(path: Path) -> Path:
    path.write_text('{"guild": {"name": "g"}, "channel": {"name": "c"}, "messages": [{"id": "1", '
                    '"timestamp": "2024-01-01T00:00:00", "author": {"id": "9", "name": "a"}, "content": '
                    + "[" * N + "]" * N + "}]}")
    return path


@pytest.mark.parametrize("command", ["speakers", "import"])
def test_deep_telegram_is_one_line_exit_2_in_bounded_memory(tmp_path: Path, workspace: Workspace,
                                                             command: str) -> None:
    add_persona(workspace, "alice")
    with workspace.store():  # the store exists before, so "unchanged" compares contents
        pass
    path = telegram_one_chat(tmp_path / "result.json")
    assert path.stat().st_size > 200_000
    argv = ["speakers", str(path)] if command == "speakers" else [
        "import", str(path), "--persona", "alice", "--me", "a", "-w", str(workspace.root)]
    before = dump(workspace)
    rc, err, rss_mb = run_cli(*argv)
    assert rc == 2
    assert err == [f"persona-studio: error: {path}:1: JSON nested deeper than {MAX_DEPTH} levels "
                   "(refused: a chat export nests a few levels)"]
    assert rss_mb < 600, f"peak RSS {rss_mb} MiB"
    assert dump(workspace) == before


@pytest.mark.parametrize("make", [telegram_full_export, openai_jsonl, sharegpt_array, discord_channel])
def test_every_json_importer_refuses_deep_nesting(tmp_path: Path, workspace: Workspace, make,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    add_persona(workspace, "alice")
    with workspace.store():
        pass
    path = make(tmp_path / f"{make.__name__}.json")
    before = dump(workspace)
    for argv in (["speakers", str(path)],
                 ["import", str(path), "--persona", "alice", "--me", "a", "-w", str(workspace.root)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"JSON nested deeper than {MAX_DEPTH} levels" in err[0], err
        assert err[0].startswith(f"persona-studio: error: {path}:")
    assert dump(workspace) == before


def test_deep_jsonl_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = openai_jsonl(tmp_path / "chat.jsonl")
    assert main(["speakers", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"persona-studio: error: {path}:2: JSON nested deeper")


def test_pretty_printed_deep_json_names_the_line_of_the_bracket(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "result.json"
    path.write_text('{"name": "x",\n "messages": [{"id": 1, "from_id": "u", "date": "2024-01-01T00:00:00",\n'
                    ' "text": ' + "[\n" * 200 + "]" * 200 + "}]}")
    assert main(["speakers", str(path)]) == 2
    # Level 65 is the 63rd "[" of the text (the file's object and the messages array are 2 levels).
    line = 3 + (MAX_DEPTH - 2) - 1
    assert capsys.readouterr().err.startswith(f"persona-studio: error: {path}:{line}: JSON nested deeper")


def test_nesting_within_the_limit_still_imports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A text entity list nested to the limit parses (the guard counts levels, not brackets).
    depth_left = MAX_DEPTH - 3  # root object, messages array, message object
    text = "[" * depth_left + '"hi"' + "]" * depth_left
    path = tmp_path / "result.json"
    records = []
    for i in range(300):
        # Strings full of brackets, quotes and backslashes don't count as levels.
        records.append({"id": 2 * i, "type": "message", "date": "2024-01-01T00:00:00", "from": "a",
                        "from_id": "u1", "text": '[[[ {{ " \\'})
        records.append({"id": 2 * i + 1, "type": "message", "date": "2024-01-01T00:00:01", "from": "b",
                        "from_id": "u2", "text": "@TEXT@"})
    doc = json.dumps({"name": "x", "messages": records})
    path.write_text(doc.replace('"@TEXT@"', text))
    assert main(["speakers", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [["a", 300], ["b", 300]]


def _true_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_true_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_true_depth(v) for v in value), default=0)
    return 0


def test_depth_guard_agrees_with_the_parser_on_any_chunking() -> None:
    """Strings full of brackets, quotes and backslash runs, cut into chunks anywhere: the
    guard's verdict is exactly `true depth <= limit`."""
    rng = random.Random(7)
    atoms = ['a"b\\', '[{"}]', "\\\\", '\\\\\\"[', "é中[", 1, None, "]]]}}"]

    def gen(d: int) -> object:
        r = rng.random()
        if d > 10 or r < 0.3:
            return rng.choice([*atoms, "\\" * rng.randint(0, 6) + '"'])
        if r < 0.65:
            return [gen(d + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(["k", "[", '"', "\\"]) + str(i): gen(d + 1) for i in range(rng.randint(0, 3))}

    for _ in range(2000):
        value = gen(0)
        raw = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode()
        limit = rng.randint(0, 8)
        guard, pos, ok = DepthGuard(limit), 0, True
        try:
            while pos < len(raw):
                step = rng.randint(1, 9)
                guard.feed(raw[pos:pos + step])
                pos += step
        except TooDeep as exc:
            ok = False
            assert raw[exc.offset:exc.offset + 1] in (b"[", b"{")
        assert ok == (_true_depth(value) <= limit), raw
        if ok:
            assert guard.depth == 0 and not guard.in_string
        with pytest.raises(TooDeep) if not ok else contextlib.nullcontext():
            check(raw.decode(), limit)

