"""Inference engines: `make_engine(ws)` builds the backend settings.jsonc asks for.

    engine.backend = "vllm"          the workspace's engine service (engine/service.py: vLLM's OpenAI
                                     server in its own process), adapters loaded at run time
                     "remote"        OpenAI-compatible server, personas as model names
                     "transformers"  transformers + peft, adapters on one PeftModel

Importing this package is cheap: backends import torch/vllm/openai only when built/started.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from persona_studio.engine.base import (
    Engine,
    EngineError,
    GenRequest,
    Progress,
    Sampling,
    adapter_label,
    adapter_rank,
    round_rank,
)
from persona_studio.workspace import Workspace

__all__ = [
    "Engine", "EngineError", "GenRequest", "LoraLimits", "Progress", "Sampling", "adapter_label",
    "context_len", "lora_limits", "make_engine", "model_path", "start_in_background",
]


@dataclass
class LoraLimits:
    max_lora_rank: int
    max_loras: int
    max_cpu_loras: int


def lora_limits(ws: Workspace) -> LoraLimits:
    """vLLM's LoRA sizes from the personas present; non-zero vllm_args override each one.

    The rank covers every current adapter and the rank training is set to produce, so an
    adapter trained after the engine started still fits without a restart. Adapters that
    are missing or broken are skipped here; they fail with a clear message when used.
    """
    from persona_studio import adapters

    ranks = [round_rank(ws.settings.train_sft_args.lora_rank)]
    with_adapter = 0
    for pid in ws.persona_ids():
        path = adapters.current(ws, pid)
        if path is None:
            continue
        try:
            ranks.append(round_rank(adapter_rank(path), str(path)))
        except EngineError:
            continue
        with_adapter += 1
    va = ws.settings.vllm_args
    max_rank = va.max_lora_rank or max(ranks)
    max_loras = va.max_loras or max(1, with_adapter)
    # Room for every persona plus one retrained version each before the LRU cache evicts.
    max_cpu = va.max_cpu_loras or max(2 * max_loras, 2)
    return LoraLimits(max_rank, max_loras, max(max_cpu, max_loras))


def make_engine(ws: Workspace) -> Engine:
    """The engine the settings ask for, not started yet (start() blocks: call it off the UI thread)."""
    s = ws.settings
    backend = s.engine.backend
    if backend == "vllm":
        from persona_studio.engine.client import ServiceEngine

        return ServiceEngine(ws)
    if backend == "transformers":
        from persona_studio.engine.hf_engine import TransformersEngine

        return TransformersEngine(
            model_path(ws),
            dtype=s.model.dtype,
            trust_remote_code=s.model.trust_remote_code,
            max_model_len=context_len(ws),
        )
    if backend == "remote":
        from persona_studio.engine.remote import RemoteEngine
        from persona_studio.settings import api_key

        return RemoteEngine(
            s.engine.base_url,
            api_key=api_key(s.engine.api_key_env),
            timeout_s=s.engine.timeout_s,
            max_lora_rank=s.vllm_args.max_lora_rank or 512,
        )
    raise EngineError(f"{ws.settings_path}: engine.backend: unknown backend {backend!r}")  # pragma: no cover


def _model_path(ws: Workspace) -> str:
    """The one resolver (basemodel.py): a directory, a cached hub name, or a built-in model's
    converted directory (converted on first use); anything else is refused in one line."""
    from persona_studio import basemodel

    return basemodel.ensure(ws)


def model_path(ws: Workspace) -> str:
    """The base model as the engines load it: a local directory or a hub name."""
    return _model_path(ws)


def context_len(ws: Workspace, model: str | None = None) -> int:
    """The engine's context: vllm_args.max_model_len, or the model's own limit when smaller.

    Read from a local model's config.json (no transformers import); a hub name keeps the setting.
    `model` is another model than the base one (the judge's).
    """
    want = ws.settings.vllm_args.max_model_len
    cfg = Path(model or model_path(ws)) / "config.json"
    try:
        raw = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return want
    raw = raw.get("text_config", raw) if isinstance(raw, dict) else {}
    limit = raw.get("max_position_embeddings") if isinstance(raw, dict) else None
    return min(want, int(limit)) if isinstance(limit, int) and limit > 0 else want


def start_in_background(engine: Engine, progress: Progress | None = None) -> Future[Engine]:
    """Start `engine` on its own thread; the future holds the engine or the EngineError."""
    fut: Future[Engine] = Future()

    def run() -> None:
        try:
            engine.start(progress)
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)
        else:
            fut.set_result(engine)

    threading.Thread(target=run, name=f"{engine.name}-start", daemon=True).start()
    return fut
