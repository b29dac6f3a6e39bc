"""Shared fixtures: a fresh workspace, and the tiny random Llama (built once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a hub; fail loudly instead of hanging on a download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def workspace(tmp_path: Path):
    """A new, empty workspace (settings.jsonc with defaults, no personas)."""
    from persona_studio.workspace import Workspace

    return Workspace.init(tmp_path / "ws")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a 2-layer random Llama + byte-level BPE tokenizer + chat template."""
    from persona_studio.testkit import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def adapter_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where sentence adapters trained for engine tests are kept, so each is trained once per run."""
    path = tmp_path_factory.getbasetemp() / "sentence-adapters"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def service_ws(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, adapter_cache: Path):
    """A party workspace (alice: adapter A, bob: adapter B, carol: none) on the vllm backend
    whose engine service is started once for the whole session and stopped at its end."""
    from persona_studio.engine import service
    from tests.engine_helpers import make_party_workspace

    ws = make_party_workspace(tmp_path_factory.mktemp("service") / "ws", tiny_model, "vllm", adapter_cache)
    service.ensure(ws)
    yield ws
    service.stop(ws)


# The built-in base model (basemodel.py), converted once per session into a private cache: a
# subprocess plays a user's first use, so tests can check what it printed and imported.
_FIRST_USE = (
    "import sys; from persona_studio import basemodel;"
    " print('PATH', basemodel.ensure(basemodel.DEFAULT));"
    " print('IMPORTED', *sorted(m for m in ('llm', 'llama_cpp') if m in sys.modules))"
)


@pytest.fixture(scope="session")
def builtin_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XDG_CACHE_HOME holding the converted built-in model; `first-use.log` beside it says how it went."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("builtin")
    xdg = root / "xdg-cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(xdg)}
    r = subprocess.run([sys.executable, "-c", _FIRST_USE], env=env, capture_output=True, text=True, timeout=900)
    (root / "first-use.log").write_text(r.stdout + "\n--- stderr ---\n" + r.stderr)
    assert r.returncode == 0, r.stderr[-2000:]
    return xdg


@pytest.fixture(scope="session")
def builtin_model(builtin_cache: Path) -> Path:
    """The converted built-in model's directory (SmolLM2-135M-Instruct, bf16 safetensors)."""
    log = (builtin_cache.parent / "first-use.log").read_text()
    return Path(next(line.split(" ", 1)[1] for line in log.splitlines() if line.startswith("PATH ")))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: no GPU tests either way
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is present on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
