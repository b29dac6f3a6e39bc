"""Where a persona's adapters live, and which version is current.

    personas/<id>/adapters/v0001/   adapter_model.safetensors, adapter_config.json, train_spec.json
    personas/<id>/adapters/CURRENT  one line: the current version's directory name

The pointer is a file (not a symlink) so it survives copies, zips and odd filesystems, and
it is replaced atomically, so an engine never sees half an update.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from persona_studio.errors import UserError
from persona_studio.settings import VLLM_LORA_RANKS
from persona_studio.workspace import Workspace, atomic_write

_VERSION = re.compile(r"^v(\d{4,})$")


def adapters_dir(ws: Workspace, persona_id: str) -> Path:
    return ws.persona_dir(persona_id) / "adapters"


def versions(ws: Workspace, persona_id: str) -> list[str]:
    d = adapters_dir(ws, persona_id)
    if not d.is_dir():
        return []
    return sorted((p.name for p in d.iterdir() if p.is_dir() and _VERSION.match(p.name)), key=_num)


def _num(name: str) -> int:
    m = _VERSION.match(name)
    return int(m.group(1)) if m else -1


def new_version_dir(ws: Workspace, persona_id: str) -> Path:
    """Create and return the next version directory (v0001, v0002, …)."""
    existing = versions(ws, persona_id)
    n = _num(existing[-1]) + 1 if existing else 1
    path = adapters_dir(ws, persona_id) / f"v{n:04d}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def set_current(ws: Workspace, persona_id: str, version: str) -> None:
    if version not in versions(ws, persona_id):
        raise ValueError(f"{persona_id}: no adapter version {version!r}")
    atomic_write(adapters_dir(ws, persona_id) / "CURRENT", version + "\n")


def current_version(ws: Workspace, persona_id: str) -> str | None:
    ptr = adapters_dir(ws, persona_id) / "CURRENT"
    if not ptr.exists():
        return None
    name = ptr.read_text(encoding="utf-8").strip()
    return name or None


def current(ws: Workspace, persona_id: str) -> Path | None:
    """The current adapter directory, or None when the persona has none (base model)."""
    name = current_version(ws, persona_id)
    return adapters_dir(ws, persona_id) / name if name else None


class AdapterError(UserError, ValueError):
    """A one-line problem with an adapter directory."""


def model_name(persona_id: str, version: str) -> str:
    """An adapter version's model name on any vLLM server the studio talks to ('alice-v0003').

    The version is in the name because vLLM treats one name as one adapter: a retrained
    version must be a new name to be loaded fresh (hot swap without a restart).
    """
    return f"{persona_id}-{version}"


def read_config(path: Path) -> dict:
    """adapter_config.json of the adapter in `path`, after checking the directory is a LoRA adapter."""
    if not path.is_dir():
        raise AdapterError(f"{path}: adapter directory is missing (retrain, or point CURRENT at an existing version)")
    cfg_path = path / "adapter_config.json"
    if not cfg_path.is_file():
        raise AdapterError(f"{cfg_path}: missing; not a LoRA adapter directory")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{cfg_path}: unreadable adapter config ({exc})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("r"), int) or cfg["r"] < 1:
        raise AdapterError(f"{cfg_path}: r: expected a positive integer LoRA rank")
    if not any(path.glob("adapter_model.*")):
        raise AdapterError(f"{path}: no adapter_model.safetensors/.bin in the adapter directory")
    return cfg


# -- what vLLM can serve -----------------------------------------------------------------------
# vLLM checks an adapter only when a request first uses it, so a bad one would surface as a
# failed turn (or request) much later. The engine and `serve` both refuse up front with these.


def vllm_rank(r: int) -> int | None:
    """The smallest rank vLLM accepts that is >= r, or None when r is above them all."""
    return next((allowed for allowed in VLLM_LORA_RANKS if r <= allowed), None)


def max_rank(cfg: dict) -> int:
    """The largest rank in an adapter_config (peft's rank_pattern can raise it per module)."""
    pattern = cfg.get("rank_pattern") or {}
    return max([int(cfg["r"]), *(int(v) for v in pattern.values())])


def servable_problem(path: Path, cfg: dict, base_vocab: int | None = None) -> str | None:
    """Why vLLM cannot serve the adapter in `path` (with config `cfg`), or None if it can."""
    if cfg.get("modules_to_save"):
        return (f"modules_to_save: adapters that save full modules ({', '.join(cfg['modules_to_save'])})"
                " cannot be served by vLLM (merge it with `export model` instead)")
    if cfg.get("use_dora"):
        return "use_dora: DoRA adapters are not supported"
    if cfg.get("bias", "none") != "none" or cfg.get("lora_bias"):
        return "bias: LoRA bias is not supported"
    if cfg.get("trainable_token_indices"):
        return "trainable_token_indices (retrained token embeddings) are not supported"
    if (path / "added_tokens.json").exists():
        return "added tokens (added_tokens.json)"
    if (path / "new_embeddings.safetensors").exists():
        return "added tokens (new_embeddings.safetensors)"
    n_tok = _tokenizer_size(path / "tokenizer.json")
    if base_vocab is not None and n_tok is not None and n_tok > base_vocab:
        return f"its tokenizer has {n_tok} tokens, more than the base vocabulary ({base_vocab})"
    try:
        names = _safetensors_keys(path / "adapter_model.safetensors")
    except ValueError as exc:
        return str(exc)
    for name in names:
        if "lora_" not in name and (
            name.endswith(("embed_tokens.weight", "lm_head.weight", "wte.weight")) or "trainable_tokens" in name
        ):
            return f"embedding weights in adapter_model.safetensors ({name})"
    return None


def _tokenizer_size(path: Path) -> int | None:
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    vocab = (raw.get("model") or {}).get("vocab") or {}
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
    ids += [t.get("id", -1) for t in raw.get("added_tokens") or []]
    return max(ids) + 1 if ids else None


def _safetensors_keys(path: Path) -> list[str]:
    # The header is 8 bytes of little-endian length, then JSON: no need to load any tensor.
    if not path.is_file():
        return []
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"{path.name}: truncated safetensors file")
        (n,) = struct.unpack("<Q", head)
        # A corrupt file can claim an absurd header length; never allocate more than the file holds.
        if n > min(path.stat().st_size - 8, 100 << 20):
            raise ValueError(f"{path.name}: unreadable safetensors header")
        try:
            header = json.loads(fh.read(n))
        except ValueError:
            raise ValueError(f"{path.name}: unreadable safetensors header") from None
    return [k for k in header if k != "__metadata__"]
