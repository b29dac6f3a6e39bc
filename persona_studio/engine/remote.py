"""A remote OpenAI-compatible server (e.g. `vllm serve BASE --enable-lora`).

Personas are addressed as model names. An adapter the server doesn't list yet is loaded at
run time through `POST /v1/load_lora_adapter` (vLLM allows it only with
VLLM_ALLOW_RUNTIME_LORA_UPDATING=true) under `adapters.model_name` ('alice-v0003'), the name
`persona-studio serve` uses too; the name carries the version, so a retrained adapter is a new
model name and the server loads it fresh. An adapter the server already serves under another
name is found by its path. The adapter path must
be readable by the server (same machine or shared storage).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persona_studio import adapters
from persona_studio.engine.base import (
    EngineError,
    GenRequest,
    Progress,
    StopCutter,
    check_servable,
    no_progress,
)
from persona_studio.engine.template import clean_messages, first_line


class RemoteEngine:
    name = "remote"

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout_s: float = 120.0, max_lora_rank: int = 512):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or "EMPTY"
        self.timeout_s = timeout_s
        self.max_lora_rank = max_lora_rank
        self.base_model: str | None = None
        self.models: set[str] = set()
        self._by_path: dict[str, str] = {}
        self.max_model_len: int | None = None  # the server's context, once connected
        self._client: Any = None  # the pool, once start() connected
        self._pool: Any = None
        self._pool_key: tuple[str, str] | None = None
        self._streams: dict[str, Any] = {}
        self._aborted: set[str] = set()
        self._lock = threading.Lock()

    def _http(self, method: str, path: str, *, root: bool = False, **kw: Any) -> Any:
        """`path` under base_url (…/v1), or under the server root when `root` (vLLM's /tokenize)."""
        base = self.base_url.removesuffix("/v1") if root else self.base_url
        url = f"{base}{path}"
        try:
            return self._http_client().request(method, url, **kw)
        except self._transport_errors() as exc:
            raise EngineError(
                f"engine.base_url {self.base_url}: server not reachable ({first_line(exc) or type(exc).__name__})"
            ) from None

    def _http_client(self) -> Any:
        """One client for every call (a turn makes several: tokenize, chat)."""
        if self._pool is None or self._pool_key != (self.base_url, self.api_key):
            if self._pool is not None:
                self._pool.close()
            self._pool = self._new_client({"Authorization": f"Bearer {self.api_key}"})
            self._pool_key = (self.base_url, self.api_key)
        return self._pool

    def _new_client(self, headers: dict[str, str]) -> Any:
        """httpx for a server the user names: TLS, proxies from the environment, keep-alive."""
        import httpx

        return httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout_s, connect=10.0))

    def _transport_errors(self) -> tuple[type[BaseException], ...]:
        import httpx

        return (httpx.HTTPError, httpx.StreamError)

    def _refresh_models(self) -> list[dict]:
        r = self._http("GET", "/models")
        if r.status_code == 401:
            raise EngineError(f"engine.base_url {self.base_url}: the server refused the API key (HTTP 401)")
        if r.status_code != 200:
            raise EngineError(f"engine.base_url {self.base_url}: GET /models answered HTTP {r.status_code}")
        try:
            data = r.json()["data"]
            self.models = {m["id"] for m in data}
        except (ValueError, KeyError, TypeError):
            raise EngineError(f"engine.base_url {self.base_url}: /models is not an OpenAI-compatible listing") from None
        # An adapter served under another name (e.g. `vllm serve --lora-modules alice=PATH`) is
        # found by its path, so it is used instead of being loaded a second time.
        self._by_path = {str(m.get("root")): m["id"] for m in data if m.get("parent") and m.get("root")}
        return data

    def start(self, progress: Progress | None = None) -> None:
        progress = progress or no_progress
        progress(f"connecting to {self.base_url}", 0.1)
        data = self._refresh_models()
        # The base model is the one entry that is not an adapter (vLLM sets `parent` on LoRAs).
        bases = [m for m in data if not m.get("parent")]
        if not bases:
            raise EngineError(f"engine.base_url {self.base_url}: the server lists no base model")
        self.base_model = bases[0]["id"]
        ctx = bases[0].get("max_model_len")
        if isinstance(ctx, int) and ctx > 0:
            self.max_model_len = ctx
        self._client = self._http_client()
        progress(f"connected: {self.base_model} ({len(data) - 1} adapters served)", 1.0)

    def close(self) -> None:
        self._client = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def count_tokens(self, text: str) -> int:
        # vLLM's /tokenize (not part of the OpenAI API); other servers: about 4 characters a token.
        r = self._http("POST", "/tokenize", root=True,
                       json={"model": self.base_model, "prompt": text, "add_special_tokens": False})
        if r.status_code == 200:
            try:
                return int(r.json()["count"])
            except (ValueError, KeyError, TypeError):
                pass
        return max(1, len(text) // 4)

    def model_for(self, persona_id: str, adapter: Path | None) -> str:
        if adapter is None:
            assert self.base_model is not None
            return self.base_model
        path = adapter.resolve()
        check_servable(path, self.max_lora_rank)
        name = adapters.model_name(persona_id, path.name)
        if name in self.models:
            return name
        if str(path) in self._by_path:
            return self._by_path[str(path)]
        with self._lock:
            r = self._http("POST", "/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)})
            if r.status_code == 200:
                self.models.add(name)
                return name
            if r.status_code == 400 and "already been loaded" in r.text:
                self.models.add(name)  # another client of the same server loaded it first
                return name
            if r.status_code == 404:
                raise EngineError(
                    f"engine.base_url {self.base_url}: the server cannot load adapters at run time; start it with "
                    f"VLLM_ALLOW_RUNTIME_LORA_UPDATING=true, or serve --lora-modules {name}={path}"
                )
            detail = r.text.strip().splitlines()[0][:200] if r.text.strip() else ""
            raise EngineError(f"{path}: the server refused to load this adapter (HTTP {r.status_code}) {detail}".strip())

    def generate(self, req: GenRequest) -> Iterator[str]:
        """Stream a chat completion (server-sent events) straight over HTTP: the `openai` package
        alone costs ~0.4 s to import, which a warm studio's first reply would pay."""
        if self._client is None:
            raise EngineError("the remote engine is not connected (start it first)")

        model = self.model_for(req.persona_id, req.adapter)
        s = req.sampling
        body: dict[str, Any] = {
            "model": model, "messages": clean_messages(req.prompt_messages), "stream": True,
            "temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_new_tokens,
            "repetition_penalty": s.repetition_penalty, "stream_options": {"include_usage": True},
        }
        if req.stop:
            body["stop"] = list(req.stop)
        if s.seed is not None:
            body["seed"] = s.seed
        cutter = StopCutter(req.stop)
        try:
            with self._client.stream("POST", f"{self.base_url}/chat/completions", json=body) as r:
                self._streams[req.request_id] = r
                if r.status_code != 200:
                    r.read()
                    raise EngineError(
                        f"engine.base_url {self.base_url}: {model}: HTTP {r.status_code}: {_error_text(r)}"
                    )
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators and ': keep-alive' comments
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = _json_or_none(data)
                    if chunk is None:
                        continue
                    if chunk.get("usage"):  # the last chunk, with include_usage
                        req.generated_tokens = int(chunk["usage"].get("completion_tokens") or 0)
                    choices = chunk.get("choices") or []
                    delta = cutter.feed((choices[0].get("delta") or {}).get("content") or "") if choices else ""
                    if delta:
                        yield delta
            tail = cutter.flush()
            if tail:
                yield tail
        except self._transport_errors() as exc:
            if req.request_id in self._aborted:
                return  # abort() closed the stream under us: what was said so far is the reply
            raise EngineError(
                f"engine.base_url {self.base_url}: server not reachable ({first_line(exc) or type(exc).__name__})"
            ) from None
        finally:
            self._aborted.discard(req.request_id)
            self._streams.pop(req.request_id, None)

    def abort(self, request_id: str) -> None:
        # Closing the HTTP stream makes vLLM abort the request server-side.
        stream = self._streams.get(request_id)
        if stream is not None:
            self._aborted.add(request_id)
            stream.close()  # the server sees the connection go and aborts the request


def _json_or_none(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return None


def _error_text(r: Any) -> str:
    """The server's own error message (OpenAI shape {"error": {"message"}} or vLLM's {"message"})."""
    data = _json_or_none(r.text) if r.text else None
    if isinstance(data, dict):
        err = data.get("error")
        msg = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else data.get("message")
        if msg:
            return first_line(str(msg))[:300]
    return first_line(r.text)[:300] if r.text else "(no body)"
