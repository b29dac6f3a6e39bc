"""transformers + peft fallback: every persona adapter loaded onto one PeftModel.

Slower than vLLM (no batching across requests, one generation at a time), but it runs
anywhere transformers does. `set_adapter` is global model state, so generations are
serialised by a lock; the base model is `with model.disable_adapter()`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persona_studio.engine.base import (
    EngineError,
    GenRequest,
    Progress,
    StopCutter,
    adapter_config,
    no_progress,
)
from persona_studio.engine.template import first_line, load_tokenizer, render_ids


class _TokenStreamer:
    """Hands text to the consuming thread token by token.

    transformers' TextIteratorStreamer releases text only at word boundaries, which makes the
    first token wait for the first space; this one releases every token's text as soon as it
    decodes to whole characters (a split UTF-8 sequence decodes to U+FFFD: wait for the rest).
    """

    def __init__(self, tok: Any, timeout: float = 600.0):
        import queue

        self.tok, self.timeout = tok, timeout
        self.q: queue.Queue[str | None] = queue.Queue()
        self.ids: list[int] = []
        self.sent = 0
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        self.ids.extend(int(t) for t in value.reshape(-1).tolist())
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        if len(text) > self.sent:
            self.q.put(text[self.sent :])
            self.sent = len(text)

    def end(self) -> None:
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        if len(text) > self.sent:
            self.q.put(text[self.sent :])
            self.sent = len(text)
        self.q.put(None)

    def __iter__(self) -> Iterator[str]:
        while (item := self.q.get(timeout=self.timeout)) is not None:
            yield item


class TransformersEngine:
    name = "transformers"

    def __init__(self, model: str, *, dtype: str = "auto", trust_remote_code: bool = False, max_model_len: int = 4096):
        self.model_name = model
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.max_model_len = max_model_len
        self.tok: Any = None
        self.model: Any = None  # a PeftModel once the first adapter is loaded
        self.device = "cpu"
        self._loaded: dict[str, str] = {}  # adapter dir (resolved) -> peft adapter name
        self._lock = threading.Lock()
        self._aborted: set[str] = set()

    def start(self, progress: Progress | None = None) -> None:
        progress = progress or no_progress
        progress(f"loading tokenizer of {self.model_name}", 0.05)
        self.tok = load_tokenizer(self.model_name, self.trust_remote_code)
        progress("importing torch/transformers", 0.1)
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        # Our progress callback reports loading; tqdm bars would garble a TUI or a piped stderr.
        hf_logging.disable_progress_bar()

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self._torch_dtype(torch)
        progress(f"loading {self.model_name} ({str(dtype).removeprefix('torch.')}, {self.device})", 0.3)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                self.model_name, dtype=dtype, trust_remote_code=self.trust_remote_code
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise EngineError(f"transformers failed to load {self.model_name}: {first_line(exc)}") from None
        self.model = model.to(self.device).eval()
        # Never plan prompts longer than the model can attend to, whatever the settings say.
        limit = getattr(model.config, "max_position_embeddings", None)
        if isinstance(limit, int) and 0 < limit < self.max_model_len:
            self.max_model_len = limit
        progress("transformers engine ready", 1.0)

    def _torch_dtype(self, torch: Any) -> Any:
        if self.dtype != "auto":
            return getattr(torch, self.dtype)
        if self.device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32

    def close(self) -> None:
        self.model = None
        self._loaded.clear()
        if self.device == "cuda":  # give the memory back, e.g. to a vLLM engine started next
            import torch

            torch.cuda.empty_cache()

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    # -- adapters ------------------------------------------------------------------------------
    def _adapter_name(self, persona_id: str, adapter: Path) -> str:
        """Load `adapter` once (keyed by its version dir) and return its peft name."""
        path = adapter.resolve()
        adapter_config(path)
        key = str(path)
        if key in self._loaded:
            return self._loaded[key]
        # peft keeps adapters in ModuleDicts: names must not contain dots.
        name = re.sub(r"\W", "_", f"{persona_id}__{path.name}__{len(self._loaded) + 1}")
        from peft import PeftModel

        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name).eval()
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise EngineError(f"{path}: cannot load this adapter onto {self.model_name}: {first_line(exc)}") from None
        # An older version of the same persona is dead weight now: drop it (after activating
        # the new one, so peft never has a deleted adapter active).
        self.model.set_adapter(name)
        for old_key, old_name in list(self._loaded.items()):
            if Path(old_key).parent == path.parent and old_name != name:
                self.model.delete_adapter(old_name)
                del self._loaded[old_key]
        self._loaded[key] = name
        return name

    # -- requests ------------------------------------------------------------------------------
    def generate(self, req: GenRequest) -> Iterator[str]:
        if self.model is None:
            raise EngineError("the transformers engine is not running (start it first)")
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        ids = render_ids(self.tok, req.prompt_messages)
        room = self.max_model_len - len(ids)
        if room < 1:
            raise EngineError(f"prompt of {len(ids)} tokens does not fit vllm_args.max_model_len {self.max_model_len}")
        s = req.sampling
        aborted = self._aborted

        class Abort(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> bool:
                return req.request_id in aborted

        streamer = _TokenStreamer(self.tok)
        kwargs: dict[str, Any] = {
            "input_ids": torch.tensor([ids], device=self.device),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=self.device),
            "max_new_tokens": min(s.max_new_tokens, room),
            "repetition_penalty": s.repetition_penalty,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([Abort()]),
            "pad_token_id": self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id,
        }
        if req.stop:
            kwargs.update(stop_strings=list(req.stop), tokenizer=self.tok)
        if s.temperature > 0:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock:
                    if s.seed is not None:
                        torch.manual_seed(s.seed)
                    if req.adapter is None:
                        if hasattr(self.model, "disable_adapter"):
                            with self.model.disable_adapter(), torch.inference_mode():
                                self.model.generate(**kwargs)
                            return
                        with torch.inference_mode():
                            self.model.generate(**kwargs)
                        return
                    # Name first: loading the first adapter replaces self.model with a PeftModel.
                    name = self._adapter_name(req.persona_id, req.adapter)
                    self.model.set_adapter(name)
                    with torch.inference_mode():
                        self.model.generate(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
                errors.append(exc)
                streamer.end()

        # Validate the adapter on the caller's thread first so a bad one is a clean error.
        if req.adapter is not None:
            adapter_config(req.adapter.resolve())
        worker = threading.Thread(target=run, name=f"hf-gen-{req.request_id[:8]}", daemon=True)
        worker.start()
        cutter = StopCutter(req.stop)
        try:
            for piece in streamer:
                delta = cutter.feed(piece)
                if delta:
                    yield delta
            worker.join()
            req.generated_tokens = len(streamer.ids)
            if errors:
                exc = errors[0]
                if isinstance(exc, EngineError):
                    raise exc
                raise EngineError(f"transformers generation for {req.persona_id} failed: {first_line(exc)}")
            tail = cutter.flush()
            if tail:
                yield tail
        finally:
            if worker.is_alive():
                self.abort(req.request_id)
                worker.join()
            self._aborted.discard(req.request_id)

    def abort(self, request_id: str) -> None:
        self._aborted.add(request_id)

    # -- batches (eval) ----------------------------------------------------------------------------
    def generate_batch(self, reqs: list[GenRequest], batch_size: int = 16) -> list[str]:
        """Whole replies for many requests: one batched `generate` per adapter and sampling setting.

        Prompts are left-padded so every row's new tokens start at the same column; requests
        that share an adapter go through together, so each adapter is activated once per group.
        """
        if self.model is None:
            raise EngineError("the transformers engine is not running (start it first)")
        import torch

        for r in reqs:
            if r.adapter is not None:
                adapter_config(r.adapter.resolve())
        out: list[str] = [""] * len(reqs)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(reqs):
            s = r.sampling
            key = (str(r.adapter.resolve()) if r.adapter else "", r.persona_id if r.adapter else "", s.temperature,
                   s.top_p, s.repetition_penalty, s.max_new_tokens, s.seed, tuple(r.stop))
            groups.setdefault(key, []).append(i)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        with self._lock:
            for idx in groups.values():
                first = reqs[idx[0]]
                if first.adapter is not None:
                    # Name first: loading the first adapter replaces self.model with a PeftModel.
                    name = self._adapter_name(first.persona_id, first.adapter)
                    self.model.set_adapter(name)
                for at in range(0, len(idx), batch_size):
                    chunk = idx[at:at + batch_size]
                    texts = self._generate_rows([render_ids(self.tok, reqs[i].prompt_messages) for i in chunk],
                                                first, pad, torch)
                    for i, (text, n) in zip(chunk, texts, strict=True):
                        cutter = StopCutter(reqs[i].stop)
                        out[i] = cutter.feed(text) + cutter.flush()
                        reqs[i].generated_tokens = n
        return out

    def _generate_rows(self, rows: list[list[int]], req: GenRequest, pad: int, torch: Any) -> list[tuple[str, int]]:
        """(text, generated token count) per prompt row; the caller holds the lock and set the adapter."""
        width = max(len(r) for r in rows)
        room = self.max_model_len - width
        if room < 1:
            raise EngineError(f"prompt of {width} tokens does not fit vllm_args.max_model_len {self.max_model_len}")
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        s = req.sampling
        kwargs: dict[str, Any] = {
            "input_ids": ids, "attention_mask": mask, "max_new_tokens": min(s.max_new_tokens, room),
            "repetition_penalty": s.repetition_penalty, "pad_token_id": pad,
        }
        if req.stop:
            kwargs.update(stop_strings=list(req.stop), tokenizer=self.tok)
        if s.temperature > 0:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if s.seed is not None:
            torch.manual_seed(s.seed)
        try:
            if req.adapter is None and hasattr(self.model, "disable_adapter"):
                with self.model.disable_adapter(), torch.inference_mode():
                    gen = self.model.generate(**kwargs)
            else:
                with torch.inference_mode():
                    gen = self.model.generate(**kwargs)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"transformers generation for {req.persona_id} failed: {first_line(exc)}") from None
        eos = set(self.model.generation_config.eos_token_id if isinstance(
            self.model.generation_config.eos_token_id, list) else [self.model.generation_config.eos_token_id])
        result = []
        for row in gen[:, width:].tolist():
            n = next((k + 1 for k, t in enumerate(row) if t in eos), len(row))
            kept = [t for t in row[:n] if t != pad]
            result.append((self.tok.decode(kept, skip_special_tokens=True), n))
        return result
