"""`persona-studio` with the warm-start fixes proposed by first_token_bench, patched in at run time.

For `first_token_bench.py --what-if` only: it measures the fixes before anyone edits the
studio's files. PS_FIX (comma-separated) picks them:

  connect  when the studio finds the engine service already up (the check it makes at mount, on
           a thread), it connects at once instead of on the first message, and imports the Chat
           screen's modules on that thread: the connect (~0.8 s on a 2-core CPU) and the first
           screen switch overlap with the user finding the Chat stage and typing (tui/app.py).
  httpx    the remote/service client streams chat completions with httpx (already imported for
           the health check and /tokenize) instead of the openai package, whose import is
           ~0.4-0.6 s of that connect (engine/remote.py).

    PS_FIX=connect,httpx python bench/studio_prewarm.py --workspace DIR   (persona-studio's arguments)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # works without an installed package too


def patch_engine_ready(conversation: object) -> None:
    """An engine that connected before anyone waited for it must not blank the screen's info
    line (the "new chat with …" greeting): clear it only when a message was waiting."""
    cls = conversation.ConversationScreen  # type: ignore[attr-defined]
    ready = cls._engine_ready
    if getattr(ready, "patched", False):
        return

    def engine_ready(self: object, engine: object | None) -> None:
        if engine is not None and self.pending is None:  # type: ignore[attr-defined]
            return
        ready(self, engine)

    engine_ready.patched = True  # type: ignore[attr-defined]
    cls._engine_ready = engine_ready


def patch_connect() -> None:
    from persona_studio.tui import app as app_mod

    look = app_mod.StudioApp._look_for_service

    def look_and_connect(self: app_mod.StudioApp) -> None:
        look(self)
        # Imported here, off the UI thread, so the first switch to Chat skips them; the patch
        # must be in place before the Chat screen mounts.
        import persona_studio.tui.screens.chat  # noqa: F401
        from persona_studio.engine import service
        from persona_studio.tui.screens import conversation

        patch_engine_ready(conversation)
        if self.workspace is not None and service.state(self.workspace)[0] == "ready":
            self.call_from_thread(self.ensure_engine)

    app_mod.StudioApp._look_for_service = look_and_connect  # type: ignore[method-assign]


def patch_httpx() -> None:
    """RemoteEngine without openai: the same request, streamed as server-sent events by httpx."""
    import json
    from collections.abc import Iterator

    from persona_studio.engine.base import EngineError, GenRequest, Progress, StopCutter, no_progress
    from persona_studio.engine.remote import RemoteEngine
    from persona_studio.engine.template import clean_messages

    def start(self: RemoteEngine, progress: Progress | None = None) -> None:
        progress = progress or no_progress
        data = self._refresh_models()
        bases = [m for m in data if not m.get("parent")]
        if not bases:
            raise EngineError(f"engine.base_url {self.base_url}: the server lists no base model")
        self.base_model = bases[0]["id"]
        ctx = bases[0].get("max_model_len")
        if isinstance(ctx, int) and ctx > 0:
            self.max_model_len = ctx
        self._client = True  # "connected"; requests go through httpx
        progress(f"connected: {self.base_model}", 1.0)

    def close(self: RemoteEngine) -> None:
        self._client = None

    def generate(self: RemoteEngine, req: GenRequest) -> Iterator[str]:
        import httpx

        if self._client is None:
            raise EngineError("the remote engine is not connected (start it first)")
        model = self.model_for(req.persona_id, req.adapter)
        s = req.sampling
        body = {
            "model": model, "messages": clean_messages(req.prompt_messages), "stream": True,
            "temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_new_tokens,
            "stop": list(req.stop) or None, "seed": s.seed, "stream_options": {"include_usage": True},
            "repetition_penalty": s.repetition_penalty,
        }
        cutter = StopCutter(req.stop)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        try:
            with httpx.stream("POST", f"{self.base_url}/chat/completions", json=body, headers=headers,
                              timeout=self.timeout_s) as r:
                if r.status_code != 200:
                    raise EngineError(f"engine.base_url {self.base_url}: {model}: HTTP {r.status_code}")
                self._streams[req.request_id] = r
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if chunk.get("usage"):
                        req.generated_tokens = chunk["usage"]["completion_tokens"]
                    if chunk.get("choices"):
                        delta = cutter.feed(chunk["choices"][0].get("delta", {}).get("content") or "")
                        if delta:
                            yield delta
            tail = cutter.flush()
            if tail:
                yield tail
        except httpx.HTTPError as exc:
            if req.request_id not in self._aborted:
                raise EngineError(f"engine.base_url {self.base_url}: server not reachable ({exc})") from None
        finally:
            self._aborted.discard(req.request_id)
            self._streams.pop(req.request_id, None)

    RemoteEngine.start = start  # type: ignore[method-assign]
    RemoteEngine.close = close  # type: ignore[method-assign]
    RemoteEngine.generate = generate  # type: ignore[method-assign]


if __name__ == "__main__":
    fixes = os.environ.get("PS_FIX", "connect").split(",")
    if "connect" in fixes:
        patch_connect()
    if "httpx" in fixes:
        patch_httpx()
    from persona_studio.cli import main

    sys.exit(main())
