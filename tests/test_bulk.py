"""bulk.Background (the writer thread of make-dataset): calls run in order, an error reaches the
caller and stops the rest, and a make-dataset whose writer fails leaves the store as it was."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from persona_studio.bulk import Background
from persona_studio.clean import columnar, pipeline
from persona_studio.clean.pipeline import make_dataset
from persona_studio.importer import import_files
from persona_studio.workspace import Workspace
from tests.test_clean_columnar import random_export
from tests.test_clean_pipeline import add_persona


def test_calls_run_in_order_and_errors_reach_the_caller() -> None:
    seen: list[int] = []
    bg = Background(depth=1)
    try:
        for i in range(50):
            bg.submit(seen.append, i)
        bg.wait()
        assert seen == list(range(50))

        def boom() -> None:
            raise ValueError("disk full")

        bg.submit(boom)
        bg.submit(seen.append, 99)  # queued behind the failure: skipped
        with pytest.raises(ValueError, match="disk full"):
            bg.wait()
        assert 99 not in seen
        bg.wait()  # the error was handed over once
    finally:
        bg.close()
    assert not any(t.name == "persona-studio-writer" and t.is_alive() for t in threading.enumerate())


def test_a_failing_writer_rolls_make_dataset_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.init(tmp_path / "ws")
    add_persona(ws, "p")
    import_files(ws, "p", [random_export(tmp_path / "chat.csv", 3000, seed=3)], me="me")
    first = make_dataset(ws, "p")
    assert first["samples"]["total"] > 50
    with ws.store() as store:
        before = [tuple(r) for r in store.query("SELECT * FROM samples ORDER BY id")]
        runs = store.query("SELECT count(*) FROM dataset_runs")[0][0]

    calls = 0
    real = pipeline._Run.accept_closed

    def fail_second(self: pipeline._Run, closed: columnar.Closed) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk I/O error")
        real(self, closed)

    monkeypatch.setattr(pipeline._Run, "accept_closed", fail_second)
    monkeypatch.setattr(columnar, "WINDOW", 300)  # several windows, so the failure is mid-run
    ws.settings_path.write_text('{make_dataset: {max_turns: 2}}', encoding="utf-8")  # different samples
    with pytest.raises(OSError, match="disk I/O error"):
        make_dataset(Workspace.open(ws.root), "p")
    assert calls >= 2
    with ws.store() as store:
        assert [tuple(r) for r in store.query("SELECT * FROM samples ORDER BY id")] == before
        assert store.query("SELECT count(*) FROM dataset_runs")[0][0] == runs
    assert not any(t.name == "persona-studio-writer" and t.is_alive() for t in threading.enumerate())
