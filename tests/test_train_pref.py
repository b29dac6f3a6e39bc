"""Preference training (train --method dpo|orpo) on the tiny Llama, CPU, real peft and bitsandbytes:
the loss equals TRL's, pairs collected through the real chat edit and swipe paths move an SFT
adapter that said S2 to S1, refusals come up front, and a killed DPO job resumes its step count."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from persona_studio import adapters, cli
from persona_studio.train import jobs, spec
from persona_studio.workspace import Workspace, atomic_write
from tests.train_helpers import PROMPT, add_persona, add_samples, chat, make_ws, until

pytestmark = pytest.mark.slow

S1 = "I am Alice, I like tea and rabbits."
S2 = "Bob builds robots and fixes old radios."
PREF_ARGS = {"learning_rate": 5e-4, "max_steps": 20, "per_device_train_batch_size": 2,
             "gradient_accumulation_steps": 1, "save_steps": 5, "cutoff_len": 128, "warmup_ratio": 0.0,
             "lr_scheduler_type": "constant", "beta": 0.1}


def _cli(ws: Workspace, *argv: str) -> int:
    return cli.main([*argv, "--workspace", str(ws.root)])


def _settings(ws: Workspace, **sections: dict) -> Workspace:
    raw = json.loads(ws.settings_path.read_text())
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    atomic_write(ws.settings_path, json.dumps(raw, indent=2))
    return Workspace.open(ws.root)


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """An SFT adapter (a real QLoRA job) that learned S1 once and S2 twice for the same question:
    it says S2 when greedy, and S1 some of the time when sampling."""
    ws = make_ws(tmp_path_factory.mktemp("sft") / "ws", tiny_model, max_steps=60, save_steps=100)
    add_persona(ws, "alice")
    add_samples(ws, "alice", [chat(PROMPT, S1), chat(PROMPT, S2), chat("Who are you ?", S2)])
    assert _cli(ws, "train", "--persona", "alice", "--wait") == 0
    current = adapters.current(ws, "alice")
    assert current is not None
    return current


def _workspace(root: Path, tiny_model: Path, sft_adapter: Path | None, **pref: object) -> Workspace:
    ws = make_ws(root, tiny_model, max_steps=60, save_steps=100)
    add_persona(ws, "alice")
    if sft_adapter is not None:
        dest = adapters.new_version_dir(ws, "alice")
        for f in sft_adapter.iterdir():
            shutil.copy(f, dest / f.name)
        adapters.set_current(ws, "alice", dest.name)
    return _settings(ws, train_pref_args={**PREF_ARGS, **pref})


def _model(base: Path, adapter: Path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tok = AutoTokenizer.from_pretrained(base)
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, quantization_config=q)
    return PeftModel.from_pretrained(model, adapter).eval(), tok


MSGS = [{"role": "system", "content": "You are Alice."}, {"role": "user", "content": PROMPT}]


def _margin_and_greedy(base: Path, adapter: Path) -> tuple[float, str]:
    """(log p(S1) - log p(S2) after the question, greedy reply) under base + adapter (4-bit, as trained)."""
    import torch

    from persona_studio.train.pref_data import collate_pairs, tokenize_pair
    from persona_studio.train.pref_loss import completion_logps

    model, tok = _model(base, adapter)
    batch = collate_pairs([tokenize_pair(tok, MSGS, S1, S2, 256)], tok.pad_token_id)
    with torch.no_grad():
        logps, _ = completion_logps(model, batch)
        enc = tok.apply_chat_template(MSGS, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        out = model.generate(**enc, max_new_tokens=24, do_sample=False)
    text = tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    return float(logps[0] - logps[1]), text


# -- the loss is TRL's -------------------------------------------------------------------------------
def test_dpo_loss_equals_trl_dpotrainer_on_the_same_batch(tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from persona_studio.train.pref_data import collate_pairs, tokenize_pair
    from persona_studio.train.pref_loop import _to_device, reference_logps
    from persona_studio.train.pref_loss import completion_logps, dpo_loss

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False, task_type="CAUSAL_LM"))
    rows = [{"prompt": [{"role": "system", "content": "You are Alice."}, {"role": "user", "content": f"Hello {i}?"}],
             "chosen": [{"role": "assistant", "content": S1}],
             "rejected": [{"role": "assistant", "content": S2 + " ok" * i}]} for i in range(4)]
    args = DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=4, beta=0.1, report_to=[],
                     use_cpu=True, max_length=None)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    trl_batch = next(iter(trainer.get_train_dataloader()))
    pol = trainer.model  # TRL keeps the starting adapter as its reference ("ref"): so do we (ours: its log-probs)
    examples = [tokenize_pair(tok, r["prompt"], S1, r["rejected"][0]["content"], 1024) for r in rows]
    device = next(pol.parameters()).device  # TRL moves the model to the GPU when there is one
    ref_c, ref_r = reference_logps(pol, examples, tok.pad_token_id, 4, device, use_base=False)
    with torch.no_grad():  # move the policy away from the reference, as a few steps would
        for name, p in pol.named_parameters():
            if "lora_B" in name and ".default." in name:
                p.add_(torch.randn_like(p) * 0.05)
    trainer._metrics["train"].clear()
    trl_loss = float(trainer.compute_loss(pol, trl_batch).detach())
    trl_margin = trainer._metrics["train"]["rewards/margins"][0]

    ours = _to_device(collate_pairs(examples, tok.pad_token_id), device)
    with torch.no_grad():
        logps, _ = completion_logps(pol, ours)
    c, r = logps.float().cpu().chunk(2)
    losses, rew_c, rew_r = dpo_loss(c, r, torch.tensor(ref_c), torch.tensor(ref_r), 0.1)
    assert abs(trl_loss - 0.6931) > 0.01  # the policy really differs from the reference
    assert float(losses.mean()) == pytest.approx(trl_loss, rel=1e-5)
    assert float((rew_c - rew_r).mean()) == pytest.approx(trl_margin, rel=1e-4)


def test_orpo_odds_ratio_term_equals_trl() -> None:
    import torch
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    from persona_studio.train.pref_loss import orpo_loss

    g = torch.Generator().manual_seed(0)
    n_c, n_r = torch.tensor([5, 9, 3]), torch.tensor([7, 4, 6])
    pol_c, pol_r = -torch.rand(3, generator=g) * n_c * 3, -torch.rand(3, generator=g) * n_r * 3
    fake = SimpleNamespace(beta=0.25, accelerator=SimpleNamespace(device="cpu"))
    trl_losses, trl_c, trl_r, _, _ = ORPOTrainer.odds_ratio_loss(fake, pol_c / n_c, pol_r / n_r)
    losses, rew_c, rew_r, nll = orpo_loss(pol_c, pol_r, n_c, n_r, 0.25)
    assert torch.allclose(losses, -trl_losses) and torch.allclose(rew_c, trl_c) and torch.allclose(rew_r, trl_r)
    assert float(nll) == pytest.approx(-float(pol_c.sum()))


# -- refused up front ---------------------------------------------------------------------------
def test_preference_run_is_refused_without_an_adapter_or_with_too_few_pairs(tmp_path, tiny_model, sft_adapter,
                                                                            capsys) -> None:
    ws = _workspace(tmp_path / "a", tiny_model, None)
    assert _cli(ws, "train", "--persona", "alice", "--method", "dpo") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no SFT adapter" in err
    ws = _workspace(tmp_path / "b", tiny_model, sft_adapter, min_pairs=4)
    with ws.store() as store:
        from persona_studio.chat.tree import ChatTree

        tree = ChatTree(store)
        c = tree.create_chat(["alice"])
        tree.add(c.id, "user", "user", PROMPT)
        r = tree.add(c.id, "assistant", "alice", S2)
        tree.edit(r.id, S1)
    assert _cli(ws, "train", "--persona", "alice", "--method", "orpo") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 usable preference pair(s)" in err and "at least 4" in err
    assert jobs.list_jobs(ws) == []


# -- the whole loop: chat -> pairs -> DPO -> the persona says S1 ---------------------------------------
def test_pairs_from_chat_edits_and_swipes_teach_the_adapter_to_say_s1(tmp_path, tiny_model, sft_adapter) -> None:
    from persona_studio.chat.session import Conversation
    from persona_studio.chat.tree import ChatTree
    from persona_studio.engine import Sampling, make_engine

    ws = _workspace(tmp_path / "ws", tiny_model, sft_adapter)
    ws = _settings(ws, engine={"backend": "transformers"}, rag_args={"enable": False})
    before_margin, before_text = _margin_and_greedy(tiny_model, adapters.current(ws, "alice"))
    assert before_text == S2

    engine = make_engine(ws)
    engine.start()
    store = ws.store()
    try:
        tree = ChatTree(store)
        greedy = Sampling(temperature=0.0, max_new_tokens=24)
        # Edits: the persona says S2 (greedy); the user corrects it to S1. Two chats.
        for _ in range(2):
            conv = Conversation.create(ws, engine, tree, ["alice"], sampling=greedy)
            conv.say(PROMPT)
            r = conv.reply("alice")
            assert r.text == S2
            tree.edit(r.message.id, S1)
        # Swipes: the user swipes, fixes the new swipe to S1 and talks on from it: the kept swipe (S1)
        # is chosen over the one passed over (S2), and the fix itself is an edit pair.
        conv = Conversation.create(ws, engine, tree, ["alice"], sampling=greedy)
        conv.say(PROMPT)
        first = conv.reply("alice")
        swipe = conv.regenerate(first.message.id)
        assert (first.text, swipe.text) == (S2, S2) and tree.message(first.message.id).parent_id is not None
        assert [m.id for m in tree.swipes(first.message.id)] == [first.message.id, swipe.message.id]
        tree.edit(swipe.message.id, S1)
        conv.say("Nice to meet you!")
    finally:
        store.close()

    with ws.store() as store:
        from persona_studio.prefs.store import list_pairs

        pairs = list_pairs(store, "alice")
    edits = [(p.chosen, p.rejected) for p in pairs if p.source == "chat_edit"]
    swipes = [(p.chosen, p.rejected) for p in pairs if p.source == "swipe"]
    assert edits == [(S1, S2)] * 3
    assert swipes == [(S1, S2)]
    assert all(p.prompt == [{"role": "user", "speaker": "user", "content": PROMPT}] for p in pairs)

    assert _cli(ws, "train", "--persona", "alice", "--method", "dpo", "--wait") == 0
    (job,) = jobs.list_jobs(ws)
    assert job.state == "done" and job.step == 20
    used = spec.load(Path(job.job_dir) / "spec.json")
    assert used.method == "dpo" and used.pair_sources == {"chat_edit": 3, "swipe": 1}
    assert used.sft_adapter == str(ws.persona_dir("alice") / "adapters" / "v0001")
    metrics = jobs.read_metrics(job.job_dir)
    assert [m["step"] for m in metrics] == list(range(1, 21))
    assert set(metrics[0]) >= {"loss", "reward_margin", "logps_chosen", "logps_rejected", "accuracy", "tokens_per_s"}
    assert metrics[0]["reward_margin"] == pytest.approx(0.0, abs=1e-4)  # the policy starts as its reference
    assert metrics[-1]["reward_margin"] > 1.0 and metrics[-1]["accuracy"] == 1.0
    assert metrics[-1]["loss"] < 0.5 * metrics[0]["loss"]

    # A new version, current, servable; the margin rose and greedy generation says S1 — in chat too.
    current = adapters.current(ws, "alice")
    assert current is not None and current.name == "v0002" and job.adapter == str(current)
    assert adapters.servable_problem(current, adapters.read_config(current)) is None
    after_margin, after_text = _margin_and_greedy(tiny_model, current)
    assert after_margin > before_margin + 1.0, (before_margin, after_margin)
    assert after_text == S1
    store = ws.store()
    try:
        conv = Conversation.create(ws, engine, ChatTree(store), ["alice"],
                                   sampling=Sampling(temperature=0.0, max_new_tokens=24))
        conv.say(PROMPT)
        r = conv.reply("alice")
        assert (r.adapter, r.text) == ("alice/v0002", S1)
    finally:
        store.close()
        engine.close()


def test_orpo_run_raises_the_margin(tmp_path, tiny_model, sft_adapter, capsys) -> None:
    ws = _workspace(tmp_path / "ws", tiny_model, sft_adapter, max_steps=12, beta=0.5)
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": PROMPT}], "chosen": S1, "rejected": S2}) + "\n"
                         for _ in range(4)))
    assert _cli(ws, "import", str(f), "--persona", "alice") == 0
    assert _cli(ws, "train", "--persona", "alice", "--method", "orpo", "--wait") == 0
    (job,) = jobs.list_jobs(ws)
    metrics = jobs.read_metrics(job.job_dir)
    assert job.state == "done" and [m["step"] for m in metrics] == list(range(1, 13))
    assert metrics[-1]["reward_margin"] > metrics[0]["reward_margin"]
    assert metrics[-1]["logps_chosen"] > metrics[0]["logps_chosen"]  # ORPO's NLL pulls S1 up
    assert spec.load(Path(job.job_dir) / "spec.json").pair_sources == {"import_dpo": 4}
    capsys.readouterr()
    assert _cli(ws, "jobs", "show", job.job_id) == 0
    assert f"margin {metrics[-1]['reward_margin']:.4f}" in capsys.readouterr().out


# -- kill -9 and --resume ----------------------------------------------------------------------------
def test_killed_dpo_job_resumes_its_step_count(tmp_path, tiny_model, sft_adapter) -> None:
    ws = _workspace(tmp_path / "ws", tiny_model, sft_adapter, max_steps=60, save_steps=5, learning_rate=2e-4)
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"{PROMPT} ({i})", "chosen": S1, "rejected": S2}) + "\n"
                         for i in range(6)))
    assert _cli(ws, "import", str(f), "--persona", "alice") == 0
    job = jobs.start_job(ws, "alice", method="dpo")
    job_dir = Path(job.job_dir)
    until(lambda: jobs.job_status(job_dir)["checkpoint_step"] >= 10, 240, "a checkpoint at step 10")
    status = jobs.job_status(job_dir)
    assert status["state"] == "running"
    os.kill(status["pid"], signal.SIGKILL)
    until(lambda: jobs.job_status(job_dir)["state"] == "failed", 10, "the killed job to read as failed")
    ckpt = jobs.job_status(job_dir)["checkpoint_step"]
    before = jobs.read_metrics(job_dir)
    assert 10 <= ckpt < 60 and len(before) >= ckpt
    ref = json.loads((job_dir / "ref_logps.json").read_text())

    assert _cli(ws, "train", "--persona", "alice", "--resume") == 0
    assert [j.job_id for j in jobs.list_jobs(ws)] == [job.job_id]
    assert _cli(ws, "jobs", "wait", job.job_id) == 0
    done = jobs.get_job(ws, job.job_id)
    assert done.state == "done" and done.step == 60
    after = jobs.read_metrics(job_dir)
    assert [m["step"] for m in after] == list(range(1, 61))
    assert after[:ckpt] == before[:ckpt]
    assert after[ckpt]["elapsed"] >= after[ckpt - 1]["elapsed"]
    assert json.loads((job_dir / "ref_logps.json").read_text()) == ref  # the reference is not re-measured
    assert any(f"resuming from checkpoint step-{ckpt:06d}" in line for line in jobs.tail_log(job_dir, 400))
    assert adapters.current(ws, "alice").name == "v0002"


def test_a_stopped_dpo_loop_checkpoints_and_resumes_exactly(tmp_path, sft_adapter) -> None:
    """Cancel (the worker's SIGTERM sets `stop`) saves a checkpoint; the resumed run starts from the state an
    uninterrupted run has at that step. (Later steps drift apart: NF4 matmuls on the CPU are not bit-exact
    between processes, and Adam turns near-zero gradient noise into full-size steps.)"""
    import dataclasses

    from persona_studio.settings import TrainPrefArgs
    from persona_studio.train import data as data_mod
    from persona_studio.train import pref_loop

    sft = spec.load(sft_adapter / "train_spec.json")
    pref = TrainPrefArgs(**{**PREF_ARGS, "max_steps": 8, "save_steps": 100})
    s = dataclasses.replace(sft, job_id="j", method="dpo", pref=pref, sft_adapter=str(sft_adapter))
    rows = [{"split": "train", "source": "import_dpo", "chosen": S1, "rejected": S2,
             "messages": [{"role": "system", "content": "You are Alice."}, {"role": "user", "content": f"{PROMPT} {i}"}]}
            for i in range(4)]
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        data_mod.write_jsonl(d / "data.jsonl", rows)
    stops = iter([False, False, True])
    assert pref_loop.train(s, a, stop=lambda: next(stops, False)) == "cancelled"
    assert jobs.job_status(a)["checkpoint_step"] == 3 and not (a / "adapter").exists()
    assert pref_loop.train(s, a) == "done"
    assert pref_loop.train(s, b) == "done"
    got, ref = jobs.read_metrics(a), jobs.read_metrics(b)
    assert [m["step"] for m in got] == list(range(1, 9))
    for k in ("loss", "reward_margin", "logps_chosen", "logps_rejected"):  # before the stop: the same run
        assert [m[k] for m in got[:3]] == pytest.approx([m[k] for m in ref[:3]], rel=1e-4, abs=1e-6)
    assert got[3]["loss"] == pytest.approx(ref[3]["loss"], rel=1e-3)  # the checkpoint restored the run's state
    assert got[-1]["reward_margin"] > got[3]["reward_margin"] > 0 and got[-1]["accuracy"] == 1.0
