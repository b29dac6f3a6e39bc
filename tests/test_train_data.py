"""Training without training: sample selection, labels, batching, identity data, spec, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from persona_studio import cli
from persona_studio.train import data, identity, jobs, loop, spec
from persona_studio.train.spec import TrainError
from tests.train_helpers import PROMPT, REPLY, add_persona, add_samples, chat, make_ws

REPO = Path(__file__).resolve().parents[1]


# -- which samples train ------------------------------------------------------------------------------
def test_pending_samples_train_when_nothing_was_scored(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws", "org/model")
    add_samples(ws, "alice", [chat("hi", "hello"), chat("tea?", "yes please")])
    add_samples(ws, "alice", [chat("bad", "reply")], status="rejected")
    add_samples(ws, "bob", [chat("hi", "yo")])
    store = ws.store()
    got = data.select_samples(store, "alice")
    store.close()
    assert sorted(s["turns"][1]["content"] for s in got) == ["hello", "yes please"]


def test_only_accepted_samples_train_once_the_judge_scored(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws", "org/model")
    add_samples(ws, "alice", [chat("hi", "good one")], status="accepted", score=5)
    add_samples(ws, "alice", [chat("hm", "unscored pending")])
    add_samples(ws, "alice", [chat("no", "bad one")], status="rejected", score=1)
    store = ws.store()
    got = data.select_samples(store, "alice")
    store.close()
    assert [s["turns"][1]["content"] for s in got] == ["good one"]


def test_samples_without_an_assistant_reply_are_dropped() -> None:
    assert data.clean_turns([{"role": "user", "content": "anyone?"}]) is None
    assert data.clean_turns([{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]) is None
    kept = data.clean_turns([{"role": "user", "content": "x", "name": "Bob"}, {"role": "assistant", "content": "y"}])
    assert kept == [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]


# -- tokenization and labels ---------------------------------------------------------------------------
def test_labels_cover_assistant_replies_only(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    msgs = [{"role": "system", "content": "You are Alice."}, *chat(PROMPT, REPLY), *chat("And then?", "Bye.")]
    ex = data.tokenize(tok, msgs, cutoff_len=256)
    assert ex is not None
    assert ex.input_ids == tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
    trained = tok.decode([i for i, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != data.IGNORE])
    assert trained == REPLY + "<|im_end|>\nBye.<|im_end|>\n"
    assert all(lab in (data.IGNORE, i) for i, lab in zip(ex.input_ids, ex.labels, strict=True))


def test_truncation_that_cuts_every_reply_drops_the_sample(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    msgs = chat("a long question " * 20, REPLY)
    assert data.tokenize(tok, msgs, cutoff_len=16) is None
    ex = data.tokenize(tok, msgs, cutoff_len=200)
    assert ex is not None and len(ex.input_ids) <= 200 and ex.n_trained > 0


# -- batching ---------------------------------------------------------------------------------------------
def test_length_grouped_batches_cover_everything_and_waste_less_padding() -> None:
    import random

    rng = random.Random(1)
    lengths = [rng.randint(10, 500) for _ in range(400)]
    b1 = data.length_grouped_batches(lengths, 4, seed=7, epoch=0)
    assert sorted(i for b in b1 for i in b) == list(range(400))
    assert b1 == data.length_grouped_batches(lengths, 4, seed=7, epoch=0)  # resumable: same order
    assert b1 != data.length_grouped_batches(lengths, 4, seed=7, epoch=1)
    order = list(range(400))
    rng.shuffle(order)
    plain = [order[i : i + 4] for i in range(0, 400, 4)]

    def padded(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    assert padded(b1) < 0.75 * padded(plain)


def test_collate_pads_right_with_ignored_labels() -> None:
    batch = data.collate([data.Example([1, 2, 3], [-100, 2, 3]), data.Example([4], [4])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_eval_split_is_seeded_and_disjoint() -> None:
    samples = [{"i": i} for i in range(40)]
    tr, ev = data.split_eval(samples, 0.1, seed=3)
    assert len(ev) == 4 and len(tr) == 36
    assert {s["i"] for s in tr} | {s["i"] for s in ev} == set(range(40))
    assert data.split_eval(samples, 0.1, seed=3) == (tr, ev)
    assert data.split_eval(samples[:12], 0.01, seed=3)[1]  # at least one held out from 10 on
    assert data.split_eval(samples, 0.0, seed=3) == (samples, [])


# -- identity (self-cognition) samples ---------------------------------------------------------------
def test_identity_samples_speak_as_the_persona_in_english() -> None:
    card = identity.CardInfo("Alice", "A girl who loves tea.", "curious and kind", "You are Alice.")
    got = identity.identity_samples(card, 12, seed=1)
    assert len(got) == 12
    assert all(s["system"] == "You are Alice." and s["turns"][0]["role"] == "user" for s in got)
    answers = [s["turns"][1]["content"] for s in got]
    assert all("Alice" in a for a in answers)
    assert any("tea" in a for a in answers) and any("curious and kind" in a for a in answers)
    assert {s["turns"][0]["content"] for s in got} >= {"Who are you?", "Introduce yourself."}
    assert got == identity.identity_samples(card, 12, seed=1)
    assert identity.identity_samples(card, 0) == []


def test_identity_samples_follow_a_chinese_card() -> None:
    card = identity.CardInfo("小美", "一个喜欢喝茶的女孩。", "开朗、好奇", "你是小美。")
    got = identity.identity_samples(card, 8, seed=1)
    assert {s["turns"][0]["content"] for s in got} >= {"你是谁？", "介绍一下你自己。"}
    assert all("小美" in s["turns"][1]["content"] for s in got)
    assert all(identity.is_chinese(s["turns"][1]["content"]) for s in got)


def test_identity_samples_are_mixed_into_the_job_data(tmp_path: Path, tiny_model: Path) -> None:
    ws = make_ws(tmp_path / "ws", tiny_model, identity_samples=5)
    add_persona(ws, "alice")
    add_samples(ws, "alice", [chat(PROMPT, REPLY)])
    job_dir = jobs.create_job(ws, "alice")
    rows = data.read_jsonl(job_dir / "data.jsonl")
    assert [r["source"] for r in rows].count("identity") == 5
    assert all(r["messages"][0] == {"role": "system", "content": "You are Alice."} for r in rows)
    s = spec.load(job_dir / "spec.json")
    assert (s.n_samples, s.n_identity, s.device, s.dtype) == (1, 5, "cpu", "float32")
    assert jobs.job_status(job_dir)["state"] == "queued"


# -- the spec ------------------------------------------------------------------------------------------
def test_spec_round_trips_and_rejects_unservable_ranks(tmp_path: Path, tiny_model: Path) -> None:
    from persona_studio.settings import TrainSftArgs

    s = spec.TrainSpec("j", "alice", str(tmp_path), str(tiny_model), False, "cpu", 0, "float32", TrainSftArgs())
    assert spec.TrainSpec.from_json(s.to_json()) == s
    raw = json.loads(s.to_json())
    raw["train"]["lora_rank"] = 12
    with pytest.raises(TrainError, match=r"lora_rank.*12"):
        spec.TrainSpec.from_json(json.dumps(raw))
    raw["train"]["lora_rank"] = 8
    raw["surprise"] = 1
    with pytest.raises(TrainError, match="unknown key 'surprise'"):
        spec.TrainSpec.from_json(json.dumps(raw))


def test_base_model_must_exist_or_be_in_the_hub_cache(tmp_path: Path, tiny_model: Path, monkeypatch) -> None:
    assert spec.check_base_model(str(tiny_model)) == str(tiny_model.resolve())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty hub cache: nothing downloaded
    with pytest.raises(TrainError, match="Qwen/Qwen2.5-7B-Instruct: not a local directory, .*not in the local hub cache"):
        spec.check_base_model("Qwen/Qwen2.5-7B-Instruct")
    for bad in (str(tmp_path / "nope"), "./models/x", "~/no/such/model", "a/b/c", "bad name!"):
        with pytest.raises(TrainError, match="no such model directory"):
            spec.check_base_model(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainError, match="no config.json"):
        spec.check_base_model(str(tmp_path / "empty"))


def test_parameter_estimate_matches_the_tiny_model(tiny_model: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(tiny_model / "model.safetensors"), "pt") as fh:
        actual = sum(fh.get_tensor(k).numel() for k in fh.keys())
    est = spec.estimate_params(json.loads((tiny_model / "config.json").read_text()))
    assert est is not None and abs(est - actual) / actual < 0.05  # norms are the only thing left out


# -- refused before a job starts ---------------------------------------------------------------------------
def _cli(ws_root: Path, *argv: str) -> int:
    return cli.main([*argv, "--workspace", str(ws_root)])


def _refused(ws, capsys: pytest.CaptureFixture[str], match: str) -> None:
    rc = _cli(ws.root, "train", "--persona", "alice")
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and match in err, err
    assert not ws.jobs_dir.exists() or not any(ws.jobs_dir.iterdir())


def test_no_usable_samples_is_refused(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = make_ws(tmp_path / "ws", tiny_model)
    add_persona(ws, "alice")
    add_samples(ws, "alice", [chat("hi", "rejected")], status="rejected")
    add_samples(ws, "alice", [[{"role": "user", "content": "only a question"}]])
    _refused(ws, capsys, "no usable training samples")


def test_missing_base_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = make_ws(tmp_path / "ws", tmp_path / "models" / "gone")
    add_persona(ws, "alice")
    add_samples(ws, "alice", [chat(PROMPT, REPLY)])
    _refused(ws, capsys, "no such model directory")


def test_unservable_rank_is_refused(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "settings.jsonc").write_text(
        json.dumps({"model": {"name_or_path": str(tiny_model)}, "train_sft_args": {"lora_rank": 12}})
    )
    rc = _cli(tmp_path / "ws", "train", "--persona", "alice")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "lora_rank" in err and "12" in err, err


def test_too_little_memory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    huge = tmp_path / "huge"
    huge.mkdir()
    # ~2.4 trillion parameters: no machine running this test has the memory to train it.
    cfg = {"hidden_size": 65536, "num_hidden_layers": 128, "intermediate_size": 65536 * 4,
           "num_attention_heads": 512, "vocab_size": 150000}
    (huge / "config.json").write_text(json.dumps(cfg))
    ws = make_ws(tmp_path / "ws", huge)
    add_persona(ws, "alice")
    add_samples(ws, "alice", [chat(PROMPT, REPLY)])
    _refused(ws, capsys, "GiB")


def test_unknown_persona_is_refused(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = make_ws(tmp_path / "ws", tiny_model)
    add_samples(ws, "alice", [chat(PROMPT, REPLY)])
    _refused(ws, capsys, "persona.jsonc")


# -- files the TUI reads -------------------------------------------------------------------------------
def test_metrics_reader_skips_a_half_written_line_and_resume_truncates(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 6)) + '{"step": 6, "lo')
    assert [m["step"] for m in jobs.read_metrics(tmp_path)] == [1, 2, 3, 4, 5]
    assert [m["step"] for m in jobs.read_metrics(tmp_path, since_line=3)] == [4, 5]
    loop.truncate_metrics(path, 3)
    assert [m["step"] for m in jobs.read_metrics(tmp_path)] == [1, 2, 3]


def test_a_job_whose_worker_died_reads_as_failed(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: this pid no longer exists
    jobs.write_status(tmp_path, job_id="j", persona_id="alice", state="running", pid=proc.pid)
    s = jobs.job_status(tmp_path)
    assert s["state"] == "failed" and str(proc.pid) in s["error"]
    jobs.write_status(tmp_path, state="running", pid=None, queued_at="2000-01-01T00:00:00.000000Z")
    assert jobs.job_status(tmp_path)["state"] == "failed"


def test_job_control_imports_neither_torch_nor_textual() -> None:
    code = (
        "import sys, persona_studio.train.jobs, persona_studio.commands.train, persona_studio.train.worker;"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'textual') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip() == "[]"


def test_loss_on_trained_positions_only_equals_the_full_loss(tiny_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    convs = [chat(PROMPT, REPLY), chat("Tea?", "Yes."), [*chat("Hi", "Hello"), *chat("Bye", "See you soon!")]]
    batch = data.collate([data.tokenize(tok, c, 128) for c in convs], tok.pad_token_id)
    with torch.no_grad():
        loss_sum, n = loop.forward_loss(model, loop.to_device(batch, "cpu"))
        full = model(**batch).loss
    assert n == int((batch["labels"][:, 1:] != data.IGNORE).sum())
    assert float(loss_sum) / n == pytest.approx(float(full), rel=1e-5)


# -- hardware -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("gpus", "capability", "want"),
    [(0, None, ("cpu", 0, "float32")), (1, (7, 5), ("cuda", 1, "float16")), (1, (8, 0), ("cuda", 1, "bfloat16")),
     (4, (9, 0), ("cuda", 4, "bfloat16"))],
)
def test_dtype_and_device_follow_the_hardware(monkeypatch: pytest.MonkeyPatch, gpus, capability, want) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _i=0: capability)
    assert spec.resolve_hardware("auto") == want
    assert spec.resolve_hardware("float32")[2] == "float32"


def test_several_gpus_train_under_accelerate_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_studio.settings import TrainSftArgs
    from persona_studio.train import worker

    launched: list[list[str]] = []

    class Proc:  # stands in for the accelerate launcher; the launch command is what is checked
        returncode = 0

        def __init__(self, cmd: list[str], **_kw: object) -> None:
            launched.append(cmd)

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(worker.subprocess, "Popen", Proc)
    s = spec.TrainSpec("j", "alice", str(tmp_path), "org/model", False, "cuda", 2, "bfloat16", TrainSftArgs())
    assert worker.Worker(tmp_path).train(s) == "done"
    (cmd,) = launched
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[-4:] == ["--module", "persona_studio.train.worker", str(tmp_path), "--inner"]


# -- packing -------------------------------------------------------------------------------------------
def test_pack_rows_fill_rows_without_splitting_examples() -> None:
    import random

    rng = random.Random(2)
    lengths = [rng.randint(5, 120) for _ in range(700)]
    rows = data.pack_rows(lengths, 128, seed=1)
    assert sorted(i for r in rows for i in r) == list(range(700))
    assert all(sum(lengths[i] for i in r) <= 128 for r in rows)
    assert len(rows) < 1.1 * sum(lengths) / 128 + 2  # nearly full rows
    assert rows == data.pack_rows(lengths, 128, seed=1)


def test_packed_rows_give_the_same_loss_as_separate_examples(tiny_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")
    convs = [chat(PROMPT, REPLY), chat("Tea?", "Yes."), [*chat("Hi", "Hello"), *chat("Bye", "See you soon!")]]
    exs = [data.tokenize(tok, c, 128) for c in convs]
    with torch.no_grad():
        sep, n_sep = loop.forward_loss(model, loop.to_device(data.collate(exs, tok.pad_token_id), "cpu"))
        packed = data.collate_packed([[exs[0], exs[1]], [exs[2]]], tok.pad_token_id)
        assert packed["n_real"] == sum(len(e.input_ids) for e in exs)
        pk, n_pk = loop.forward_loss(model, loop.to_device(packed, "cpu"))
        # Without the position_ids restarts the second example would attend to the first: a different loss.
        leak = data.collate_packed([[exs[0], exs[1]], [exs[2]]], tok.pad_token_id)
        leak["position_ids"] = torch.arange(leak["input_ids"].shape[1]).expand_as(leak["input_ids"]).clone()
        lk, _ = loop.forward_loss(model, loop.to_device(leak, "cpu"))
    assert n_pk == n_sep
    assert float(pk) == pytest.approx(float(sep), rel=1e-5)
    assert abs(float(lk) - float(sep)) > 0.05  # (a random model's loss moves little, but it does move)
