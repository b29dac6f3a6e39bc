"""`export adapter` exports only regular files inside the adapter directory (issue 10, point 12):
a symlink planted in a shared or copied workspace never carries an outside file into the export."""

from __future__ import annotations

import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from persona_studio import adapters
from persona_studio.cli import main
from tests.export_helpers import alice_workspace

SECRET = "root:x:0:0:the secret outside the workspace\n"


@pytest.fixture
def ws(tmp_path: Path, tiny_model: Path):
    ws = alice_workspace(tmp_path / "ws", tiny_model)
    return ws


def archive_members(path: Path) -> dict[str, bytes]:
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            return {n: zf.read(n) for n in zf.namelist()}
    with tarfile.open(path) as tf:
        out = {}
        for m in tf.getmembers():
            assert m.isfile() or m.isdir(), f"{m.name} is not a plain file"
            f = tf.extractfile(m)
            out[m.name] = f.read() if f else b""
        return out


@pytest.mark.parametrize("name", ["out.zip", "out.tar.gz", "out-dir"])
def test_symlinks_in_an_adapter_are_never_exported(ws, tmp_path: Path, name: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "passwd"
    secret.write_text(SECRET)
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    (outside / "id_rsa").write_text(SECRET)
    version = adapters.adapters_dir(ws, "alice") / "v0001"
    honest = sorted(p.name for p in version.iterdir())
    os.symlink(secret, version / "notes.txt")  # a file link to /etc/passwd, say
    os.symlink(outside, version / "extra")  # a directory link
    os.symlink(version / "adapter_config.json", version / "config-link.json")  # even one pointing inside
    out = tmp_path / name
    rc = main(["-w", str(ws.root), "export", "adapter", "--persona", "alice", "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.err.strip() == ("persona-studio: warning: left out (links or special files, never exported): "
                                    "'config-link.json', 'extra', 'notes.txt'")
    if out.is_dir():
        files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert not any(p.is_symlink() for p in out.rglob("*"))
    else:
        files = archive_members(out)
    assert sorted(Path(n).name for n in files) == honest
    assert all(SECRET.encode() not in data for data in files.values())


def test_a_version_directory_that_is_a_link_out_is_refused(ws, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = tmp_path / "elsewhere"
    real = adapters.adapters_dir(ws, "alice") / "v0001"
    real.rename(elsewhere)
    os.symlink(elsewhere, real)
    out = tmp_path / "a.zip"
    rc = main(["-w", str(ws.root), "export", "adapter", "--persona", "alice", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "is a link out of" in err, err
    assert not out.exists()
