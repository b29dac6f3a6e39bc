"""Tea-party throughput: the engine service (vLLM) vs the in-process transformers backend.

A 4-persona, 20-turn party (strategy "list", greedy decoding, fixed reply length) runs through
the same Conversation path the TUI and `persona-studio party` use. The `vllm` backend is the
workspace's engine service (engine/service.py: vLLM's OpenAI server as its own process, reached
over HTTP): it is started once, its start time is reported apart from the party, and it is
stopped at the end. Reported per backend: start time (service start / model load), connect
time, generated tokens/s over the whole party, mean and p50 time-to-first-token; then each
backend's ratio over transformers (the baseline).

CPU (no CUDA): the tiny 2-layer testkit Llama in fp32. CUDA: a random-weight model with a
Llama-3.2-1B-like shape built from a config (bf16), so the numbers mean something for real
serving. Adapters are random rank-8 LoRAs (peft with init_lora_weights=False) so every
persona really runs through its own non-zero adapter.

    python bench/party_bench.py [--turns 20] [--personas 4] [--max-new-tokens 32] [--model DIR] [--out DIR]
    python bench/party_bench.py --build-model DIR     # write the ~1B random Llama (for --model) and exit
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_model(out: Path, cuda: bool) -> Path:
    from persona_studio.testkit import build_tiny_llama

    if (out / "config.json").exists():
        return out
    if not cuda:
        return build_tiny_llama(out)
    # Llama-3.2-1B-like body (the vocabulary stays the testkit's small BPE one).
    return build_tiny_llama(
        out, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096,
    )


def random_adapters(base: Path, work: Path, n: int) -> list[Path]:
    """n random rank-8 LoRAs (non-zero B: each one really changes the output), one base load."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    cfg = LoraConfig(
        r=8, lora_alpha=16, init_lora_weights=False, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    out = []
    for i in range(n):
        torch.manual_seed(i)
        peft_model = get_peft_model(model, cfg)
        peft_model.save_pretrained(str(work / f"adapter{i}"))
        model = peft_model.unload()  # back to the plain base for the next one
        out.append(work / f"adapter{i}")
    return out


def install_adapter(ws, persona_id: str, src: Path) -> Path:
    """Copy an adapter in as the persona's next version and make it current."""
    import shutil

    from persona_studio import adapters

    dest = adapters.new_version_dir(ws, persona_id)
    for f in src.iterdir():
        shutil.copy2(f, dest / f.name)
    adapters.set_current(ws, persona_id, dest.name)
    return dest


def make_workspace(root: Path, model: Path, backend: str, adapter_dirs: list[Path], cuda: bool, args: argparse.Namespace):
    import shutil

    from persona_studio.persona.card import Persona, save_persona
    from persona_studio.workspace import Workspace, atomic_write

    settings = {
        "model": {"name_or_path": str(model), "dtype": "bfloat16" if cuda else "float32"},
        "engine": {"backend": backend},
        "vllm_args": {
            # CPU: a fraction of RAM; a real model (the built-in 135M in fp32) needs room for its KV cache.
            "gpu_memory_utilization": 0.5 if cuda else float(os.environ.get("PARTY_BENCH_CPU_MEM", "0.1")),
            "max_model_len": 2048 if cuda else 1024,
            "enforce_eager": not cuda,
        },
        # repetition_penalty 1.0 and temperature 0: both backends do the same work per token.
        "infer_args": {"temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": args.max_new_tokens},
        "rag_args": {"enable": False},
    }
    if root.exists():  # a rerun with the same --out starts from a fresh workspace
        shutil.rmtree(root)
    ws = Workspace.init(root)
    atomic_write(ws.settings_path, json.dumps(settings))
    ws = Workspace.open(root)
    for i, src in enumerate(adapter_dirs):
        pid = f"guest{i + 1}"
        save_persona(ws, Persona(id=pid, name=f"Guest{i + 1}", description="A guest at the tea party."))
        install_adapter(ws, pid, src)
    return ws


def run_backend(ws, n_turns: int) -> dict:
    from persona_studio.chat.session import Conversation
    from persona_studio.chat.tree import ChatTree
    from persona_studio.engine import make_engine

    service_s = None
    if ws.settings.engine.backend == "vllm":
        from persona_studio.engine import service

        service.stop(ws)  # a leftover from an interrupted run would hide the start time
        t0 = time.monotonic()
        service.ensure(ws)  # the service's own start: vLLM loading the model in its process
        service_s = time.monotonic() - t0
    engine = make_engine(ws)
    t0 = time.monotonic()
    engine.start()  # vllm: connects to the running service; transformers: loads the model
    start_s = time.monotonic() - t0
    store = ws.store()
    try:
        ids = ws.persona_ids()
        conv = Conversation.create(ws, engine, ChatTree(store), ids, kind="party", rng=random.Random(0))
        conv.reply(ids[0])  # warm-up turn (first LoRA load, lazy kernels), not timed
        conv.say("Welcome, everyone. Tell me about your week.")
        t0 = time.monotonic()
        results = conv.run(n_turns, strategy="list")
        wall = time.monotonic() - t0
    finally:
        store.close()
        engine.close()
        if service_s is not None:
            service.stop(ws)
    tokens = sum(r.gen_tokens for r in results)  # what the model generated, as each engine counts it
    gen_s = sum(r.elapsed_s for r in results)
    ttfts = [r.ttft_s for r in results]
    return {
        "backend": engine.name,
        # vllm: service start (model load in its process) + connect; transformers: model load
        "start_s": round((service_s or 0.0) + start_s, 2),
        "service_start_s": round(service_s, 2) if service_s is not None else None,
        "connect_s": round(start_s, 3) if service_s is not None else None,
        "turns": len(results),
        "tokens": tokens,
        "party_wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / gen_s, 1) if gen_s else 0.0,
        "ttft_mean_ms": round(1000 * statistics.mean(ttfts), 1),
        "ttft_p50_ms": round(1000 * statistics.median(ttfts), 1),
        "adapters": sorted({r.adapter for r in results}),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--personas", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--out", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--backends", default="transformers,vllm", help="comma-separated; the first is the baseline")
    ap.add_argument("--model", default=None, help="base model directory (default: built in the work dir)")
    ap.add_argument("--build-model", metavar="DIR", default=None,
                    help="only write the ~1B-shaped random Llama (bf16 shapes, as on CUDA) to DIR and exit")
    args = ap.parse_args()

    import torch

    if args.build_model:
        print(build_model(Path(args.build_model), cuda=True))
        return 0
    cuda = torch.cuda.is_available()
    work = Path(args.out or tempfile.mkdtemp(prefix="party-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"device: {'cuda ' + torch.cuda.get_device_name(0) if cuda else 'cpu'}; work dir {work}", file=sys.stderr)
    model = Path(args.model).resolve() if args.model else build_model(work / "model", cuda)
    adapter_dirs = random_adapters(model, work, args.personas)
    rows = []
    for backend in args.backends.split(","):
        ws = make_workspace(work / f"ws-{backend}", model, backend, adapter_dirs, cuda, args)
        print(f"running {backend} …", file=sys.stderr)
        rows.append(run_backend(ws, args.turns))
        print(json.dumps(rows[-1]), file=sys.stderr)
        if backend == "transformers" and not cuda and torch.get_num_threads() > 1:
            # On a small, busy CPU torch's intra-op threads spin against each other; a tiny
            # model decodes far faster on one thread. Show both so the ratio isn't a strawman.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                rows.append(run_backend(ws, args.turns) | {"backend": "transformers-1thread"})
            finally:
                torch.set_num_threads(threads)
            print(json.dumps(rows[-1]), file=sys.stderr)
    base = rows[0]
    print(f"\nmodel {model}; {args.personas} personas, {args.turns} turns, {args.max_new_tokens} new tokens a turn")
    print(f"{'backend':<21}{'start s':>9}{'tokens':>8}{'tok/s':>9}{'TTFT ms':>9}{'TTFT p50':>10}  vs {base['backend']}")
    for r in rows:
        ratio = r["tokens_per_s"] / base["tokens_per_s"] if base["tokens_per_s"] else float("nan")
        name = "vllm (service)" if r["backend"] == "vllm" else r["backend"]
        print(
            f"{name:<21}{r['start_s']:>9.1f}{r['tokens']:>8}{r['tokens_per_s']:>9.1f}"
            f"{r['ttft_mean_ms']:>9.1f}{r['ttft_p50_ms']:>10.1f}  x{ratio:.2f} tok/s, "
            f"TTFT x{base['ttft_mean_ms'] / r['ttft_mean_ms']:.2f} faster"
        )
    for r in rows:
        if r.get("service_start_s") is not None:
            print(f"engine service: started in {r['service_start_s']:.1f} s (once, before the party), "
                  f"connect {1000 * r['connect_s']:.0f} ms, stopped at the end")
    print(json.dumps({"device": "cuda" if cuda else "cpu", "model": str(model), "results": rows}))
    return 0


if __name__ == "__main__":  # vLLM starts worker processes: keep the guard
    sys.exit(main())
