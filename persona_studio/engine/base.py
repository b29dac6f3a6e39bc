"""The one engine interface every backend implements, and the checks they share.

A backend streams text deltas for a chat-formatted prompt, optionally through one persona's
LoRA adapter. Backends are chosen by `engine.backend` in settings.jsonc (see `make_engine`).
Nothing here imports torch/vllm/openai: `base` is safe to import from the TUI.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from persona_studio import adapters
from persona_studio.errors import UserError
from persona_studio.settings import VLLM_LORA_RANKS

# progress(message, fraction or None when unknown). Called from the starting thread.
Progress = Callable[[str, float | None], None]


class EngineError(UserError, RuntimeError):
    """A one-line, user-facing engine problem (start failure, bad adapter, server down)."""


@dataclass
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    max_new_tokens: int = 256
    seed: int | None = None

    @classmethod
    def from_infer_args(cls, a: object, seed: int | None = None) -> Sampling:
        return cls(
            temperature=a.temperature,  # type: ignore[attr-defined]
            top_p=a.top_p,  # type: ignore[attr-defined]
            repetition_penalty=a.repetition_penalty,  # type: ignore[attr-defined]
            max_new_tokens=a.max_new_tokens,  # type: ignore[attr-defined]
            seed=seed,
        )


@dataclass
class GenRequest:
    prompt_messages: list[dict]
    persona_id: str
    adapter: Path | None  # None = the base model
    sampling: Sampling = field(default_factory=Sampling)
    stop: list[str] = field(default_factory=list)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Filled in by the engine while it streams: tokens the model generated (the reply may be
    # shorter after stop strings are cut). Read it once generate() is exhausted.
    generated_tokens: int = 0


class Engine(Protocol):
    """start() blocks (call it off the UI thread); generate() yields text deltas."""

    name: str

    def start(self, progress: Progress | None = None) -> None: ...

    def generate(self, req: GenRequest) -> Iterator[str]: ...

    def abort(self, request_id: str) -> None: ...

    def count_tokens(self, text: str) -> int: ...

    def close(self) -> None: ...


def no_progress(_msg: str, _frac: float | None) -> None:
    return None


def round_rank(r: int, where: str = "adapter") -> int:
    """The smallest rank vLLM accepts that is >= r."""
    allowed = adapters.vllm_rank(r)
    if allowed is None:
        raise EngineError(f"{where}: LoRA rank {r} is above the largest rank vLLM serves ({VLLM_LORA_RANKS[-1]})")
    return allowed


def adapter_config(path: Path) -> dict:
    """Read and sanity-check an adapter directory's adapter_config.json."""
    try:
        return adapters.read_config(path)
    except adapters.AdapterError as exc:
        raise EngineError(str(exc)) from None


def adapter_rank(path: Path) -> int:
    return adapters.max_rank(adapter_config(path))


def check_servable(path: Path, max_lora_rank: int) -> None:
    """Refuse, with one line, adapters vLLM would reject deep inside a request."""
    cfg = adapter_config(path)
    rank = adapters.max_rank(cfg)
    if rank > max_lora_rank:
        raise EngineError(
            f"{path / 'adapter_config.json'}: r: LoRA rank {rank} is above the engine's max_lora_rank "
            f"{max_lora_rank} (restart the engine, or set vllm_args.max_lora_rank)"
        )
    problem = adapters.servable_problem(path, cfg)
    if problem is not None:
        raise EngineError(f"{path}: {problem}")


def adapter_label(persona_id: str, adapter: Path | None) -> str:
    """What a transcript shows as the adapter used: 'alice/v0002', or 'base'."""
    return f"{persona_id}/{adapter.name}" if adapter is not None else "base"


class StopCutter:
    """Streams text and cuts it at the first stop string, even one split across deltas.

    Backends whose server/library already stops on strings still pass through this so every
    backend returns the same text; it holds back only the last few characters that could be
    the start of a stop string.
    """

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.buf = ""
        self.done = False

    def feed(self, delta: str) -> str:
        if self.done:
            return ""
        self.buf += delta
        cut = min((i for i in (self.buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.done = True
            out, self.buf = self.buf[:cut], ""
            return out
        if self.hold <= 0:
            out, self.buf = self.buf, ""
            return out
        out, self.buf = self.buf[: -self.hold] if len(self.buf) > self.hold else "", self.buf[-self.hold :]
        return out

    def flush(self) -> str:
        out, self.buf = ("" if self.done else self.buf), ""
        return out
