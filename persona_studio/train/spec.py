"""`TrainSpec`: everything one training job needs, resolved once, validated, saved as JSON.

The spec is written to `.studio/jobs/<id>/spec.json` when the job is created and copied as
`train_spec.json` beside the finished adapter, so an adapter always says how it was made.
It holds *resolved* values (device, dtype, absolute base-model path), never "auto".
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_studio import settings as settings_mod
from persona_studio.errors import UserError
from persona_studio.settings import VLLM_LORA_RANKS, TrainPrefArgs, TrainSftArgs

SPEC_VERSION = 1


class TrainError(UserError, ValueError):
    """A one-line reason why a job cannot start (or cannot go on)."""


@dataclass
class TrainSpec:
    job_id: str
    persona_id: str
    workspace: str  # absolute path of the workspace root
    base_model: str  # absolute local path, or a hub name
    trust_remote_code: bool
    device: str  # "cuda" | "cpu"
    num_gpus: int  # > 1 means the worker runs the loop under `accelerate launch`
    dtype: str  # "bfloat16" | "float16" | "float32": compute dtype of the run
    train: TrainSftArgs = field(default_factory=TrainSftArgs)
    n_samples: int = 0  # conversations from the store
    n_identity: int = 0  # generated self-cognition samples (training split only)
    n_eval: int = 0  # held out for eval loss
    created_at: str = ""
    version: int = SPEC_VERSION
    # Preference runs (train --method dpo|orpo, train/pref_loop.py): `train` then holds the settings
    # the starting adapter was trained with (its LoRA shape and quantization).
    method: str = "sft"  # "sft" | "dpo" | "orpo"
    pref: TrainPrefArgs | None = None
    sft_adapter: str = ""  # the adapter the run starts from (and, for DPO, its reference)
    n_pairs: int = 0
    pair_sources: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "spec.json") -> TrainSpec:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrainError(f"{source}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        if not isinstance(raw, dict):
            raise TrainError(f"{source}: expected an object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise TrainError(f"{source}: unknown key {unknown[0]!r}")
        # The settings checker gives the same typed validation (and messages) as settings.jsonc.
        from persona_studio import jsonc

        checker = settings_mod._Checker(source, jsonc.key_lines(text))
        try:
            train = checker.build(TrainSftArgs, raw.get("train", {}), ("train",))
        except settings_mod.SettingsError as exc:
            raise TrainError(str(exc)) from None
        pref = None
        if raw.get("pref") is not None:
            try:
                pref = checker.build(TrainPrefArgs, raw["pref"], ("pref",))
            except settings_mod.SettingsError as exc:
                raise TrainError(str(exc)) from None
        kwargs = {k: v for k, v in raw.items() if k not in ("train", "pref")}
        try:
            spec = cls(train=train, pref=pref, **kwargs)
        except TypeError as exc:
            raise TrainError(f"{source}: {exc}") from None
        validate(spec, source)
        return spec


def save(spec: TrainSpec, path: Path) -> None:
    from persona_studio.workspace import atomic_write

    atomic_write(path, spec.to_json())


def load(path: Path) -> TrainSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrainError(f"{path}: cannot read the job spec: {exc.strerror}") from None
    return TrainSpec.from_json(text, str(path))


def validate(spec: TrainSpec, source: str = "train_sft_args") -> None:
    """Refuse what would fail later or produce an adapter vLLM cannot serve."""
    t = spec.train
    if t.lora_rank not in VLLM_LORA_RANKS:
        raise TrainError(
            f"{source}: train.lora_rank: {t.lora_rank} cannot be served by vLLM"
            f" (use one of {', '.join(map(str, VLLM_LORA_RANKS))})"
        )
    if not t.lora_target:
        raise TrainError(f"{source}: train.lora_target: name at least one linear module")
    if spec.device not in ("cuda", "cpu"):
        raise TrainError(f"{source}: device: must be cuda or cpu, got {spec.device!r}")
    if spec.dtype not in ("bfloat16", "float16", "float32"):
        raise TrainError(f"{source}: dtype: must be bfloat16, float16 or float32, got {spec.dtype!r}")
    if spec.method not in ("sft", "dpo", "orpo"):
        raise TrainError(f"{source}: method: must be sft, dpo or orpo, got {spec.method!r}")
    if spec.method != "sft" and (spec.pref is None or not spec.sft_adapter):
        raise TrainError(f"{source}: a {spec.method} run needs 'pref' settings and 'sft_adapter'")
    check_base_model(spec.base_model)


def check_base_model(name_or_path: str, root: Path | None = None) -> str:
    """What training loads, from basemodel's one resolver: a local directory (absolute), a hub name
    already in the local hub cache, or a built-in model's directory (converted here on first use)."""
    from persona_studio import basemodel

    try:
        path = basemodel.ensure(name_or_path, root)
    except basemodel.BaseModelError as exc:
        raise TrainError(str(exc)) from None
    return str(Path(path).resolve()) if Path(path).is_dir() else path


def resolve_hardware(dtype_setting: str) -> tuple[str, int, str]:
    """(device, number of GPUs, dtype) from what this machine has; dtype 'auto' follows the hardware."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = "cuda" if n else "cpu"
    if dtype_setting != "auto":
        dtype = dtype_setting
        if device == "cuda" and dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise TrainError(f"model.dtype: bfloat16 is not supported by {torch.cuda.get_device_name(0)}; use float16")
    elif device == "cpu":
        dtype = "float32"
    else:
        # bf16 needs Ampere (compute capability 8.0) or newer; older cards train in fp16.
        major, _ = torch.cuda.get_device_capability(0)
        dtype = "bfloat16" if major >= 8 else "float16"
    return device, n, dtype


# -- a rough memory check, so an impossible job is refused before it queues ------------------------
def estimate_params(config: dict[str, Any]) -> int | None:
    """Parameter count of a decoder-only transformer from its config.json (None if unknown)."""
    cfg = config.get("text_config", config)
    try:
        h = int(cfg["hidden_size"])
        layers = int(cfg["num_hidden_layers"])
        vocab = int(cfg["vocab_size"])
        inter = int(cfg.get("intermediate_size") or 4 * h)
        heads = int(cfg.get("num_attention_heads") or 1)
        kv = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or h // heads)
    except (KeyError, TypeError, ValueError):
        return None
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2
    mlp = 3 * h * inter * int(cfg.get("num_experts") or cfg.get("num_local_experts") or 1)
    embed = vocab * h * (1 if cfg.get("tie_word_embeddings") else 2)
    return layers * (attn + mlp) + embed


def estimate_bytes(n_params: int, quantization: str, dtype: str) -> int:
    """Weights in their training form + ~25% for LoRA, optimizer and activations + 0.5 GB runtime."""
    per_param = 0.55 if quantization == "nf4" else {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]
    return int(n_params * per_param * 1.25 + 512 * 2**20)


def available_bytes(device: str) -> int | None:
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(0)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(base_model: str, quantization: str, dtype: str, device: str) -> None:
    cfg_path = Path(base_model) / "config.json"
    if not cfg_path.exists():
        return  # hub model not downloaded: nothing to estimate from
    try:
        n = estimate_params(json.loads(cfg_path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError):
        return
    have = available_bytes(device)
    if n is None or have is None:
        return
    need = estimate_bytes(n, quantization, dtype)
    if need > have:
        where = "GPU memory" if device == "cuda" else "RAM"
        raise TrainError(
            f"{cfg_path}: a {n / 1e9:.1f}B-parameter model needs about {need / 2**30:.1f} GiB of {where}"
            f" to train ({quantization}), but only {have / 2**30:.1f} GiB is free"
        )
