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
