"""Unreadable files and directories (issue 10, point 6): one line and exit 2, never a traceback;
a UTF-8 file cut short inside its last character is still UTF-8, not "binary".

Tests run as root, where chmod 000 doesn't stop a read: an unreadable file is simulated by
making `open` raise the PermissionError the kernel would give (the code paths are the same)."""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import pytest

from persona_studio.cli import main
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import add_persona
from tests.test_data_cli import dump

WHATSAPP = "12/31/23, 9:41 PM - Ana: héllo 你好\n12/31/23, 9:42 PM - Bo: ça va? 再见\n" * 3


def deny(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Reading `path` fails as for a file without read permission."""
    real_open = builtins.open

    def guarded(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - open's own signature
        if isinstance(file, str | bytes | os.PathLike) and Path(os.fsdecode(file)).resolve() == path.resolve():
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    add_persona(workspace, "ana")
    with workspace.store():
        pass
    return workspace


def test_unreadable_file_is_one_line_for_speakers_import_and_cards(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    chat = tmp_path / "chat.txt"
    chat.write_text(WHATSAPP, encoding="utf-8")
    card = tmp_path / "card.json"
    card.write_text('{"name": "Ana"}')
    before = dump(ws)
    deny(monkeypatch, chat)
    assert main(["speakers", str(chat)]) == 2
    assert one_line_error(capsys) == f"persona-studio: error: {chat}: cannot read (Permission denied)"
    assert main(["import", str(chat), "--persona", "ana", "--me", "Ana", "-w", str(ws.root)]) == 2
    assert one_line_error(capsys) == f"persona-studio: error: {chat}: cannot read (Permission denied)"
    assert dump(ws) == before
    deny(monkeypatch, card)
    assert main(["persona", "import", str(card), "-w", str(ws.root)]) == 2
    assert one_line_error(capsys) == f"persona-studio: error: {card}: cannot read: Permission denied"


def test_unreadable_persona_file_is_one_line(ws: Workspace, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    deny(monkeypatch, ws.personas_dir / "ana" / "persona.jsonc")
    assert main(["persona", "list", "-w", str(ws.root)]) == 2
    assert one_line_error(capsys) == "persona-studio: error: personas/ana/persona.jsonc: cannot read: Permission denied"


def test_directories_and_pipes_are_named_as_such(ws: Workspace, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "WhatsApp Chat"
    folder.mkdir()
    for argv in (["speakers", str(folder)], ["import", str(folder), "--persona", "ana", "-w", str(ws.root)]):
        assert main(argv) == 2
        assert one_line_error(capsys) == (f"persona-studio: error: {folder}: is a directory, not a chat export "
                                          "(name the export file inside it)")
    assert main(["persona", "import", str(folder), "-w", str(ws.root)]) == 2
    assert one_line_error(capsys) == f"persona-studio: error: {folder}: cannot read: Is a directory"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert main(["speakers", str(fifo)]) == 2  # must not block reading the pipe
    assert one_line_error(capsys).endswith("not a regular file (save the export to a file first)")


def test_utf8_cut_inside_its_last_character_is_not_binary(ws: Workspace, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    whole = WHATSAPP.encode("utf-8")
    assert whole.endswith("见\n".encode())
    chat = tmp_path / "cut.txt"
    chat.write_bytes(whole[:-2])  # "见" is 3 bytes: 1 of them is gone, and the newline
    assert main(["speakers", str(chat), "--json"]) == 0
    assert capsys.readouterr().out.strip() == '[["Ana", 3], ["Bo", 3]]'
    assert main(["import", str(chat), "--persona", "ana", "--me", "Ana", "--json", "-w", str(ws.root)]) == 0
    assert '"encoding": "utf-8"' in capsys.readouterr().out
    # A real binary file is still called one.
    blob = tmp_path / "blob.txt"
    blob.write_bytes(bytes(range(256)) * 4)
    assert main(["speakers", str(blob)]) == 2
    assert one_line_error(capsys) == f"persona-studio: error: {blob}: binary file, not a chat export"
