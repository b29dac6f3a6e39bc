"""Issue 10 point 14: settings.jsonc refuses NaN, Infinity, integers beyond their type and absurd
values, and duplicate keys, each as one line `file:line: key.path: problem` and exit 2 (CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_studio import settings
from persona_studio.cli import main
from persona_studio.settings import SettingsError


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("train_sft_args: {\n  seed: 1e30,\n}", 3, "train_sft_args.seed: must be <= 4294967295, got 1e+30"),
        ("train_sft_args: {\n  seed: -1,\n}", 3, "train_sft_args.seed: must be >= 0, got -1"),
        ("train_sft_args: {\n  num_train_epochs: 1e300,\n}", 3, "train_sft_args.num_train_epochs: must be <= 1000, got 1e+300"),
        ("infer_args: {\n  temperature: NaN,\n}", 3, "infer_args.temperature: must be a finite number, got NaN"),
        ("infer_args: {top_p: Infinity}", 2, "infer_args.top_p: must be a finite number, got Infinity"),
        ("engine: {\n\n  timeout_s: -Infinity}", 4, "engine.timeout_s: must be a finite number, got -Infinity"),
        ("rag_args: {chunk_chars: NaN}", 2, "rag_args.chunk_chars: must be a finite integer, got NaN"),
        ("rag_args: {chunk_chars: 1e300}", 2, "rag_args.chunk_chars: integer out of range, got 1e+300"),
        ("rag_args: {chunk_chars: 123456789012345678901234}", 2, "rag_args.chunk_chars: integer out of range"),
        ("train_sft_args: {max_steps: 1e15}", 2, "train_sft_args.max_steps: out of range (at most 1e+12 either way)"),
        ("train_sft_args: {\n  seed: 1,\n  lora_rank: 8,\n  seed: 2,\n}", 5,
         "train_sft_args.seed: duplicate key (first given on line 3)"),
        ('"infer_args": {},\n"infer_args": {}', 3, "infer_args: duplicate key (first given on line 2)"),
        ("make_dataset: {pii: {phone_regions: [\"CN\", \"XX\"]}}", 2,
         "make_dataset.pii.phone_regions: unknown region code(s) 'XX'"),
    ],
)
def test_bad_numbers_and_duplicates_are_one_line_with_file_line_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, line: int, message: str) -> None:
    root = tmp_path / "ws"
    assert main(["init", str(root)]) == 0
    capsys.readouterr()
    (root / "settings.jsonc").write_text("{\n" + body + "\n}\n", encoding="utf-8")
    assert main(["info", "-w", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"persona-studio: error: {root / 'settings.jsonc'}:{line}: {message}"), err
    assert "\n" not in err


def test_ordinary_values_still_load() -> None:
    s = settings.parse('{train_sft_args: {seed: 4294967295, num_train_epochs: 3, max_steps: 1e6},'
                       ' infer_args: {temperature: 0.0}, rag_args: {chunk_chars: 1200.0}}')
    assert s.train_sft_args.seed == 2**32 - 1 and s.train_sft_args.max_steps == 1_000_000
    assert isinstance(s.rag_args.chunk_chars, int)
    with pytest.raises(SettingsError, match="duplicate key"):
        settings.parse('{party: {strategy: "list", "strategy": "pooled"}}')
    # the same key in two different objects is no duplicate
    assert settings.parse('{infer_args: {top_p: 0.5}, rag_args: {top_k: 2}}').rag_args.top_k == 2
