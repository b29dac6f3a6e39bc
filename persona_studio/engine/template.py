"""Chat-template rendering shared by the in-process backends, so vLLM and transformers see
exactly the same prompt tokens (the remote backend lets the server apply the same template)."""

from __future__ import annotations

from typing import Any

from persona_studio.engine.base import EngineError


def load_tokenizer(model: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise EngineError(f"model.name_or_path {model!r}: cannot load its tokenizer ({first_line(exc)})") from None
    if not getattr(tok, "chat_template", None):
        raise EngineError(f"model.name_or_path {model!r}: the tokenizer has no chat template; use an instruct/chat model")
    return tok


def clean_messages(messages: list[dict]) -> list[dict]:
    """Only role/content go to the template: speaker names are already written into content."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def render_ids(tok: Any, messages: list[dict]) -> list[int]:
    try:
        text = tok.apply_chat_template(clean_messages(messages), add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # jinja errors (e.g. a template that insists on alternating roles)
        raise EngineError(f"chat template: cannot render this conversation ({first_line(exc)})") from None
    return list(tok(text, add_special_tokens=False)["input_ids"])


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
