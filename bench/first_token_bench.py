"""Time from launching `persona-studio` to the first streamed token of a chat reply, cold and warm.

The installed binary runs in tmux (100x30) and is driven by keys as a user would: wait for the
first paint, press 4 (Chat), `i`, type a message, Enter; the screen is polled every 20 ms until
the first characters of the persona's reply are on it. COLD: no engine service is running (the
time includes starting vLLM's server). WARM: the service from the cold run is still up, as after
quitting the studio with the default engine.keep_running. Each run also notes the moments the
screen shows each stage on the way (first paint, chat screen, engine ready, "writing…"), and an
in-process profile splits the warm path (imports, connect, token counting over HTTP, first token).

CPU (default): the tiny 2-layer testkit Llama with a sentence adapter, so the reply is a known
sentence. `--model PATH` (with CUDA: a realistic model, e.g. the ~1B random Llama that
`bench/party_bench.py --build-model DIR` writes) gets a random rank-8 adapter; any reply text counts.

    python bench/first_token_bench.py [--warm 5] [--cold 1] [--model PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TMUX = shutil.which("tmux")
SIZE = (100, 30)
POLL_S = 0.02
SENTENCE = "Alice likes books and tea."
MESSAGE = "hello"
GOAL_S = 1.0
# Screen milestones, in the order they appear; the first-token column is the one that counts.
STEPS = ("paint", "chat", "ready", "writing", "first", "done")


# -- set-up ----------------------------------------------------------------------------------------
def build_assets(work: Path, model_arg: str | None) -> tuple[Path, Path, str | None]:
    """(base model, alice's adapter, the sentence the adapter says or None when unknown)."""
    from persona_studio.testkit import build_tiny_llama, train_sentence_adapter

    if model_arg is None:
        model = work / "model"
        if not (model / "config.json").exists():
            build_tiny_llama(model)
        adapter = work / "adapter"
        if not (adapter / "adapter_config.json").exists():
            train_sentence_adapter(model, adapter, SENTENCE)
        return model, adapter, SENTENCE
    from bench.party_bench import random_adapters

    model = Path(model_arg).resolve()
    if not (work / "adapter0" / "adapter_config.json").exists():
        random_adapters(model, work, 1)
    return model, work / "adapter0", None


def make_workspace(root: Path, model: Path, adapter: Path, cuda: bool, rag: bool):
    from bench.party_bench import install_adapter
    from persona_studio.persona.card import Persona, save_persona
    from persona_studio.workspace import Workspace, atomic_write

    settings = {
        "model": {"name_or_path": str(model), "dtype": "bfloat16" if cuda else "float32"},
        "engine": {"backend": "vllm", "keep_running": True},
        "vllm_args": {"gpu_memory_utilization": 0.3 if cuda else 0.1, "max_model_len": 2048 if cuda else 512,
                      "enforce_eager": not cuda},
        "infer_args": {"temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": 24},
        "rag_args": {"enable": rag},
    }
    if root.exists():
        shutil.rmtree(root)
    ws = Workspace.init(root)
    atomic_write(ws.settings_path, json.dumps(settings))
    ws = Workspace.open(root)
    save_persona(ws, Persona(id="alice", name="Alice", description="Alice is a guest at the tea party."))
    install_adapter(ws, "alice", adapter)
    return ws


def studio_argv() -> list[str]:
    exe = shutil.which("persona-studio")
    # Not installed (e.g. a bare GPU box): the same entry point through this interpreter.
    return [exe] if exe else [sys.executable, "-m", "persona_studio"]


def studio_python() -> str:
    """The interpreter the studio runs under (its console script's shebang). The service's
    settings fingerprint includes the interpreter path that launched it, so the profile runs
    under the same one, or it would be refused as a service "with other settings"."""
    exe = shutil.which("persona-studio")
    if exe:
        with open(exe, "rb") as fh:
            first = fh.readline().decode(errors="replace").strip()
        if first.startswith("#!") and Path(first[2:].split()[0]).exists():
            return first[2:].split()[0]
    return sys.executable


def studio_command(ws_root: Path) -> str:
    return " ".join([*studio_argv(), "--workspace", str(ws_root)])


PASS_ENV = ("PATH", "HOME", "LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV", "TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS")
PASS_PREFIXES = ("CUDA_", "NVIDIA_", "HF_", "TRANSFORMERS_", "VLLM_", "XDG_")


def pane_command(command: str) -> str:
    """`command` with this process's environment that matters (CUDA libraries, caches, offline
    flags), given explicitly: a pane gets the environment of the tmux server, which may be an
    older one the user runs, not ours."""
    keep = {k: v for k, v in os.environ.items() if k in PASS_ENV or k.startswith(PASS_PREFIXES)}
    keep["TERM"] = "xterm-256color"
    return "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(keep.items())) + " " + command


# -- the terminal ------------------------------------------------------------------------------------
def capture(name: str) -> str:
    return subprocess.run([TMUX, "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout


def send(name: str, *keys: str, literal: bool = False) -> None:
    subprocess.run([TMUX, "send-keys", "-t", name, *(["-l"] if literal else []), *keys], check=True)


HEAD = re.compile(r"^\s*Alice · (writing…|alice/)")


def reply_text(screen: str) -> tuple[str | None, bool]:
    """(the text under the persona's reply header or None when there is no header yet, stored).

    While it streams the header reads 'Alice · writing…'; once stored, 'Alice · alice/v0001 · …'
    (a short reply may finish between two polls, so both count). The body is the non-blank
    lines after the header up to the next blank line (the gap before the next message)."""
    lines = screen.split("\n")
    for i, line in enumerate(lines):
        m = HEAD.match(line)
        if m is None:
            continue
        body = []
        for below in lines[i + 1:]:
            text = below.strip(" ▏▎▌┃│")
            if not text:
                if body:
                    break
                continue
            if text.startswith(("chat ", "new chat with")) or "palette" in text:  # the info line, the footer
                break
            body.append(text)
        return " ".join(body), m.group(1) != "writing…"
    return None, False


def type_message(name: str) -> int:
    """`i`, then the message, until it shows in the input; returns how many retries it took.
    `i` focuses the input on a later pass of the app's event loop; on a loaded box keys typed
    before that go to the screen instead (a late focus may leave a stray 'i' in the text)."""
    for attempt in range(5):
        send(name, "i")
        time.sleep(0.05)
        send(name, MESSAGE, literal=True)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            if re.search(rf"▊\s+\S*{MESSAGE}", capture(name)):
                return attempt
            time.sleep(POLL_S)
    raise RuntimeError(f"the message never showed in the input; screen:\n{capture(name)}")


def one_run(command: str, sentence: str | None, timeout: float, label: str, work: Path) -> dict[str, float]:
    """Launch the studio, chat, and return the seconds since launch at which each step showed."""
    name = f"ps-bench-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "TERM": "xterm-256color"}
    t: dict[str, float] = {}
    screen = ""
    t0 = time.monotonic()
    subprocess.run([TMUX, "new-session", "-d", "-s", name, "-x", str(SIZE[0]), "-y", str(SIZE[1]),
                    f"{pane_command(command)}; echo EXIT=$?; sleep 30"], check=True, env=env)
    try:
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            screen = capture(name)
            now = time.monotonic() - t0
            if "paint" not in t and "▶1 Import" in screen:
                t["paint"] = now
                send(name, "4")
            elif "paint" in t and "chat" not in t and "new chat with Alice" in screen:
                t["chat"] = now
                retries = type_message(name)
                if retries:
                    t["retyped"] = retries  # this run's times include the app's slow focus
                send(name, "Enter")
            elif "chat" in t:
                if "ready" not in t and "vllm ready" in screen:
                    t["ready"] = now
                body, stored = reply_text(screen)
                if body is not None:
                    t.setdefault("writing", now)
                    t.setdefault("ready", now)
                if body and "first" not in t:
                    t["first"] = now
                    (work / f"screen-{label}-first.txt").write_text(screen)
                if stored:
                    t["done"] = now
                    t.setdefault("first", now)  # an empty reply: its end is the first thing to see
                    if sentence is not None and sentence not in (body or ""):
                        raise RuntimeError(f"{label}: the reply is not the adapter's sentence; screen:\n{screen}")
                    break
            if "EXIT=" in screen or "Traceback" in screen:
                break
            time.sleep(POLL_S)
        if "done" not in t:
            raise RuntimeError(f"{label}: no reply on screen after {time.monotonic() - t0:.0f} s; steps {t}; "
                               f"screen:\n{screen}")
        send(name, "Escape")
        send(name, "C-q")
        end = time.monotonic() + 30
        while "EXIT=" not in capture(name) and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        subprocess.run([TMUX, "kill-session", "-t", name], capture_output=True)
    return t


# -- in-process profile of the warm path ---------------------------------------------------------------
PROFILE = r"""
import json, sys, time
T0 = time.perf_counter()
out = {}
def lap(key, since):
    now = time.perf_counter(); out[key] = round(1000 * (now - since), 1); return now
from persona_studio.workspace import Workspace
ws = Workspace.open(sys.argv[1])
t = lap("open workspace (incl. imports)", T0)
from persona_studio.engine import make_engine, service
engine = make_engine(ws)
t = lap("import engine + make_engine", t)
info, started = service.ensure(ws)
assert not started, "the service should be running"
t = lap("service.ensure (lock, health, fingerprint)", t)
engine.start()
t = lap("rest of ServiceEngine.start (GET /models)", t)
out["httpx imported on the way (it should not be)"] = "yes" if "httpx" in sys.modules else "no"
from persona_studio.chat.session import Conversation
from persona_studio.chat.tree import ChatTree
tree = ChatTree(ws.store())
conv = Conversation.create(ws, engine, tree, ["alice"], kind="chat")
t = lap("Conversation.create (store, card)", t)
n_http = {"n": 0}
orig = engine.count_tokens
def counted(text):
    n_http["n"] += 1
    return orig(text)
engine.count_tokens = counted
conv.say("hello")
t = lap("say() (1 /tokenize + store)", t)
first = {}
def on_delta(pid, d):
    first.setdefault("t", time.perf_counter())
t1 = time.perf_counter()
r = conv.reply("alice", on_delta=on_delta)
out["reply(): prompt until first delta"] = round(1000 * (first["t"] - t1), 1)
out["  of which time-to-first-token in the engine"] = round(1000 * r.ttft_s, 1)
out["reply(): rest (stream, count, store)"] = round(1000 * (time.perf_counter() - first["t"]), 1)
out["/tokenize calls in say()+reply()"] = n_http["n"]
t = time.perf_counter()
for i in range(20):
    orig(f"a fresh text {i} to count")
out["one /tokenize round trip"] = round(1000 * (time.perf_counter() - t) / 20, 1)
out["total (fresh process to first delta)"] = round(1000 * (first["t"] - T0), 1)
engine.close()
print("PROFILE " + json.dumps(out))
"""


def profile(ws_root: Path) -> dict:
    r = subprocess.run([studio_python(), "-c", PROFILE, str(ws_root)], capture_output=True, text=True, timeout=300)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("PROFILE ")), None)
    if line is None:
        raise RuntimeError(f"profile failed:\n{r.stderr[-3000:]}")
    return json.loads(line[len("PROFILE "):])


def import_time(module: str) -> float:
    code = f"import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"
    return float(subprocess.run([studio_python(), "-c", code], capture_output=True, text=True, check=True).stdout)


# -- report ---------------------------------------------------------------------------------------------
def table(rows: list[tuple[str, dict[str, float]]]) -> None:
    print(f"\n{'run':<8}" + "".join(f"{s + ' s':>10}" for s in STEPS))
    for label, t in rows:
        print(f"{label:<8}" + "".join(f"{t[s]:>10.2f}" if s in t else f"{'-':>10}" for s in STEPS))
    print("  paint = first paint; chat = Chat screen shown (4 pressed at paint); ready = status says the\n"
          "  engine is connected (i, text, Enter sent at chat); writing = the reply's header; first = reply\n"
          "  text under it (the first streamed token); done = the reply stored (its final header)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warm", type=int, default=5, help="warm runs (median reported)")
    ap.add_argument("--cold", type=int, default=1, help="cold runs (service stopped before each)")
    ap.add_argument("--model", default=None, help="base model directory (default: the tiny testkit Llama)")
    ap.add_argument("--rag", action="store_true", help="lore retrieval on (the settings default; no lore files)")
    ap.add_argument("--out", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one run may take (cold includes vLLM start)")
    ap.add_argument("--keep", action="store_true", help="leave the engine service running at the end")
    args = ap.parse_args()
    if TMUX is None:
        print("first_token_bench: tmux is not installed (apt-get install tmux)", file=sys.stderr)
        return 2

    import torch

    from persona_studio.engine import service

    cuda = torch.cuda.is_available()
    # Bytecode as an installed studio has it: pip compiles it at install, and a plain Python
    # writes it on the first run. Where PYTHONDONTWRITEBYTECODE is set (some sandboxes), an
    # edited module would otherwise be compiled again at every launch timed here.
    import compileall

    import persona_studio

    compileall.compile_dir(str(Path(persona_studio.__file__).parent), quiet=1)
    work = Path(args.out or tempfile.mkdtemp(prefix="first-token-"))
    work.mkdir(parents=True, exist_ok=True)
    device = "cuda " + torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"device: {device}; work dir {work}", file=sys.stderr)
    model, adapter, sentence = build_assets(work, args.model)
    ws = make_workspace(work / "ws", model, adapter, cuda, args.rag)
    print(f"model {model}; launching: {studio_command(ws.root)}", file=sys.stderr)
    rows: list[tuple[str, dict[str, float]]] = []
    try:
        for i in range(args.cold):
            service.stop(ws)
            rows.append((f"cold{i + 1}", one_run(studio_command(ws.root), sentence, args.timeout, f"cold{i + 1}", work)))
            print(rows[-1], file=sys.stderr)
        if not args.cold:  # started by the studio's own entry point (see studio_python)
            subprocess.run([*studio_argv(), "engine", "start", "-w", str(ws.root)], check=True)
        warm_timeout = min(args.timeout, 120.0)  # a warm run that takes longer is stuck
        for i in range(args.warm):
            before = service.read_info(ws)
            rows.append((f"warm{i + 1}", one_run(studio_command(ws.root), sentence, warm_timeout, f"warm{i + 1}", work)))
            after = service.read_info(ws)
            assert before is not None and after is not None and after.pid == before.pid, "the service restarted"
            print(rows[-1], file=sys.stderr)
        prof = profile(ws.root) if args.warm else {}
    finally:
        if not args.keep:
            service.stop(ws)
    # textual.app: the floor of any start; httpx: what the engine client no longer imports (see engine/loopback.py)
    imports = {m: round(1000 * import_time(m), 1) for m in ("textual.app", "persona_studio.tui.app", "httpx")}

    table(rows)
    cold = [t["first"] for label, t in rows if label.startswith("cold")]
    warm = [t["first"] for label, t in rows if label.startswith("warm")]
    result: dict = {"device": device, "model": str(model), "rag": args.rag, "runs": dict(rows)}
    if warm:
        w = statistics.median(warm)
        steps = {s: statistics.median(t[s] for label, t in rows if label.startswith("warm") and s in t) for s in STEPS}
        print(f"\nwarm median first token: {w:.2f} s  (min {min(warm):.2f}, max {max(warm):.2f}, {len(warm)} runs)")
        print("warm median per step:   " + ", ".join(f"{s} {v:.2f}" for s, v in steps.items()))
        result |= {"warm_median_s": round(w, 3), "warm_steps_median_s": steps}
    if cold:
        c = statistics.median(cold)
        print(f"cold first token:        {c:.2f} s  ({len(cold)} run{'s' * (len(cold) > 1)})")
        result["cold_median_s"] = round(c, 3)
    if warm and cold:
        print(f"warm / cold:             {w / c:.3f}  (cold is {c / w:.1f}x the warm time)")
        result["warm_over_cold"] = round(w / c, 4)
    if warm:
        met = w < GOAL_S
        print(f"goal warm first token < {GOAL_S:.0f} s: {'MET' if met else 'NOT MET'} ({w:.2f} s)")
        result["goal_met"] = met
        print("\nwhere the warm time goes (fresh process, in-process timings, ms):")
        for k, v in prof.items():
            print(f"  {k:<52}{v:>9}")
        print("import costs (fresh interpreter, ms): " + ", ".join(f"{k} {v}" for k, v in imports.items()))
        result |= {"profile_ms": prof, "imports_ms": imports}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
