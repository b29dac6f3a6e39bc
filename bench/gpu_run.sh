#!/usr/bin/env bash
# Issue 9's speed benchmarks on a CUDA machine with a realistic model, in under 6 minutes:
#   1. a ~1B-shaped random Llama (built from a config: no download)               <= 75 s
#   2. bench/party_bench.py: 4 personas, 20 turns, engine service vs transformers  <= 150 s
#   3. bench/first_token_bench.py: launch -> first reply token in tmux, cold + 3 warm  <= 125 s
# Each step has its own time limit (5 min 50 s in all); a step that fails or runs out says so and
# the next one still runs. Step 3's cold start reuses vLLM's compile cache from step 2.
# Needs: CUDA vllm, torch, the project's Python deps; tmux for step 3 (skipped with a note if absent).
# Run from anywhere:  bash bench/gpu_run.sh     (OUT=/some/dir to keep the work files)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-$(mktemp -d /tmp/ps-gpu-bench.XXXXXX)}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1

cleanup() {  # whatever a killed step left running: its engine services and tmux sessions
  for ws in "$OUT/party/ws-vllm" "$OUT/first/ws"; do
    [ -d "$ws/.studio" ] && "$PY" -m persona_studio engine stop -w "$ws" >/dev/null 2>&1 || true
  done
  if command -v tmux >/dev/null; then
    tmux ls -F '#S' 2>/dev/null | grep '^ps-bench-' | xargs -r -n1 tmux kill-session -t 2>/dev/null || true
  fi
}
trap cleanup EXIT

# SIGINT first, so the scripts' own clean-up (stopping the engine service) runs; KILL 20 s later.
step() { local secs=$1; shift; timeout -s INT -k 20 "$secs" "$@"; }

echo "== checks ($(date -u +%H:%M:%S) UTC, work dir $OUT)"
"$PY" -c "import torch, textual, persona_studio; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, '|', torch.cuda.get_device_name(0))"
BACKENDS=transformers,vllm
if ! "$PY" -c "import vllm; print('vllm', vllm.__version__)"; then
  echo "vllm does not import here: the party runs on transformers only and the first-token bench is skipped"
  BACKENDS=transformers
fi

echo "== building the ~1B random Llama"
step 75 "$PY" bench/party_bench.py --build-model "$OUT/model1b"

echo "== party: 4 personas x 20 turns, engine service (vllm) vs in-process transformers"
step 150 "$PY" bench/party_bench.py --model "$OUT/model1b" --out "$OUT/party" --backends "$BACKENDS" 2>"$OUT/party.log" \
  || { echo "party_bench failed or timed out (rc $?); last log lines:"; tail -20 "$OUT/party.log"; }

echo "== first token: launch persona-studio in tmux -> first streamed reply token (cold 1, warm 3)"
if [ "$BACKENDS" = transformers ]; then
  echo "skipped: the studio's engine service needs vllm"
elif command -v tmux >/dev/null; then
  step 125 "$PY" bench/first_token_bench.py --model "$OUT/model1b" --cold 1 --warm 3 --timeout 90 \
    --out "$OUT/first" 2>"$OUT/first.log" \
    || { echo "first_token_bench failed or timed out (rc $?); last log lines:"; tail -20 "$OUT/first.log"; }
else
  echo "tmux is not installed: first_token_bench skipped (it drives the real terminal app)"
fi
echo "== done ($(date -u +%H:%M:%S) UTC); logs in $OUT"
