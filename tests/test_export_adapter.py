"""`export adapter`: directory, .zip and .tar.gz round trips that peft can load again."""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from persona_studio import adapters
from persona_studio.cli import main
from persona_studio.export.adapter import export_adapter
from persona_studio.export.files import ExportError
from tests.export_helpers import add_persona, alice_workspace, install_adapter


@pytest.fixture
def ws(tmp_path: Path, tiny_model: Path):
    ws = alice_workspace(tmp_path / "ws", tiny_model)
    install_adapter(ws, "alice", tiny_model, r=16, seed=2)  # v0002 becomes current
    return ws


def _same_tree(a: Path, b: Path) -> None:
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


@pytest.mark.parametrize("name", ["out-dir", "alice.zip", "alice.tar.gz"])
def test_round_trip_loads_in_peft(ws, tmp_path: Path, tiny_model: Path, name: str) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "exports" / name
    summary = export_adapter(ws, "alice", out)
    assert summary["version"] == "v0002" and summary["rank"] == 16
    assert {"adapter_model.safetensors", "adapter_config.json", "train_spec.json"} <= set(summary["files"])
    src = adapters.current(ws, "alice")
    if out.suffix == ".zip":
        with zipfile.ZipFile(out) as zf:
            zf.extractall(tmp_path / "x")
        got = tmp_path / "x" / "alice-v0002"
    elif name.endswith(".tar.gz"):
        with tarfile.open(out) as tf:
            tf.extractall(tmp_path / "x", filter="data")
        got = tmp_path / "x" / "alice-v0002"
    else:
        got = out
    _same_tree(src, got)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(got))
    assert model.peft_config["default"].r == 16
    assert [p.name for p in out.parent.iterdir()] == [name], "no temp files left beside the export"


def test_older_version_and_refusals(ws, tmp_path: Path) -> None:
    summary = export_adapter(ws, "alice", tmp_path / "v1", version="v0001")
    assert summary["rank"] == 8
    assert json.loads((tmp_path / "v1" / "adapter_config.json").read_text())["r"] == 8

    with pytest.raises(ExportError, match="already exists"):
        export_adapter(ws, "alice", tmp_path / "v1")
    (tmp_path / "file.zip").write_bytes(b"old")
    with pytest.raises(ExportError, match="already exists"):
        export_adapter(ws, "alice", tmp_path / "file.zip")
    assert (tmp_path / "file.zip").read_bytes() == b"old"
    export_adapter(ws, "alice", tmp_path / "file.zip", force=True)
    assert zipfile.is_zipfile(tmp_path / "file.zip")

    (tmp_path / "plain").write_text("x")
    with pytest.raises(ExportError, match="plain is not a directory"):
        export_adapter(ws, "alice", tmp_path / "plain" / "out.zip")

    add_persona(ws, "bob")
    with pytest.raises(ExportError, match="persona 'bob': has no trained adapter"):
        export_adapter(ws, "bob", tmp_path / "bob")
    assert not (tmp_path / "bob").exists()


def test_cli_export_adapter(ws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["export", "adapter", "-w", str(ws.root), "--persona", "alice", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out"] == str(ws.exports_dir / "alice-adapter-v0002")
    assert (ws.exports_dir / "alice-adapter-v0002" / "adapter_model.safetensors").is_file()

    add_persona(ws, "bob")
    rc = main(["export", "adapter", "-w", str(ws.root), "--persona", "bob", "-o", str(tmp_path / "b.zip")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "persona 'bob': has no trained adapter" in err
    assert not (tmp_path / "b.zip").exists()
