from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persona_studio", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_init_creates_a_workspace_that_info_reads(tmp_path: Path) -> None:
    ws = tmp_path / "new"
    r = cli("init", str(ws))
    assert r.returncode == 0, r.stderr
    assert (ws / "settings.jsonc").read_text().startswith("// persona-studio settings")
    assert (ws / "personas").is_dir()
    r = cli("info", "--json", "--workspace", str(ws))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["personas"] == [] and info["schema_version"] >= 1
    assert (ws / ".studio" / "studio.db").exists()


def test_workspace_defaults_to_current_directory(tmp_path: Path) -> None:
    assert cli("init", str(tmp_path / "w")).returncode == 0
    r = cli("info", "--json", cwd=tmp_path / "w")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["workspace"] == str((tmp_path / "w").resolve())


def test_repo_root_is_a_working_workspace(tmp_path: Path) -> None:
    import shutil

    # copy so the test doesn't create .studio/ inside the checkout
    shutil.copytree(REPO / "personas", tmp_path / "personas")
    shutil.copy(REPO / "settings.jsonc", tmp_path / "settings.jsonc")
    r = cli("info", "--json", "--workspace", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["personas"]) >= 1


def test_init_refuses_existing_workspace(tmp_path: Path) -> None:
    assert cli("init", str(tmp_path / "w")).returncode == 0
    r = cli("init", str(tmp_path / "w"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "already a workspace" in r.stderr


@pytest.mark.parametrize(
    ("settings_text", "expected"),
    [
        ('{\n  "infer_args": {\n    "temprature": 0.5\n  }\n}', "settings.jsonc:3: infer_args.temprature: unknown key (did you mean 'temperature'?)"),
        ('{\n  "infer_args": {"temperature": "warm"}\n}', "settings.jsonc:2: infer_args.temperature: expected a number"),
        ('{\n  "infer_args": {\n  ]\n}', "settings.jsonc:3: syntax error"),
    ],
)
def test_bad_settings_exit_2_with_one_line_and_no_file_changes(
    tmp_path: Path, settings_text: str, expected: str
) -> None:
    ws = tmp_path / "w"
    ws.mkdir()
    (ws / "settings.jsonc").write_text(settings_text)
    r = cli("info", "--workspace", str(ws))
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert (ws / "settings.jsonc").read_text() == settings_text
    assert not (ws / ".studio").exists()


def test_missing_workspace(tmp_path: Path) -> None:
    r = cli("info", "--workspace", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "workspace does not exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_directory_without_settings_is_not_a_workspace(tmp_path: Path) -> None:
    r = cli("info", "--workspace", str(tmp_path))
    assert r.returncode == 2 and "no settings.jsonc here" in r.stderr


def test_newer_database_is_refused(tmp_path: Path) -> None:
    import sqlite3

    assert cli("init", str(tmp_path / "w")).returncode == 0
    db = tmp_path / "w" / ".studio" / "studio.db"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    before = db.read_bytes()
    r = cli("info", "--workspace", str(tmp_path / "w"))
    assert r.returncode == 2 and "newer than this persona-studio" in r.stderr
    assert db.read_bytes() == before


def test_help_lists_the_commands_without_heavy_imports() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from persona_studio.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('torch','transformers','vllm','chromadb','textual') if m in sys.modules]\n"
        "print(heavy); print(out.getvalue())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "[]"
    assert "init" in r.stdout and "export" in r.stdout


def test_workspace_option_works_before_and_after_the_command(tmp_path: Path) -> None:
    assert cli("init", str(tmp_path / "w")).returncode == 0
    for argv in (["-w", str(tmp_path / "w"), "info", "--json"], ["info", "--json", "-w", str(tmp_path / "w")]):
        r = cli(*argv, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["workspace"] == str((tmp_path / "w").resolve())


@pytest.mark.parametrize("argv", [[], ["-w", "some dir"], ["--workspace", "d"], ["--workspace=d"]])
def test_opening_the_studio_reads_the_workspace_like_the_full_parser(argv: list[str]) -> None:
    """`persona-studio [-w DIR]` skips building every command's parser (a warm start is waited
    for), and must mean exactly what the full parser would make of it."""
    from persona_studio.cli import build_parser, studio_only

    args = build_parser().parse_args(argv)
    assert getattr(args, "handler", None) is None
    assert studio_only(argv) == (True, getattr(args, "workspace", None))


@pytest.mark.parametrize("argv", [["-w"], ["--version"], ["-h"], ["info"], ["-w", "d", "info"], ["-w", "--version"],
                                  ["--workspace="], ["-wd"]])
def test_anything_else_goes_through_the_full_parser(argv: list[str]) -> None:
    from persona_studio.cli import studio_only

    assert studio_only(argv) == (False, None)


def test_workspace_flag_without_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    r = cli("-w", cwd=tmp_path)
    assert r.returncode == 2 and "expected one argument" in r.stderr
