"""Training starts that must be refused, or serialised (issue 10, points 10, 11 and 15):
two `train` at the same moment queue one job; `train --resume` never unpickles code planted in
a checkpoint; a base model that is not on this machine stops `train` before any job exists.

No model trains here: the CLI runs with the worker launch stubbed out where a job would start
(what is under test happens before it), so these tests stay quick."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from persona_studio.cli import main
from persona_studio.train import jobs
from tests.train_helpers import PROMPT, REPLY, add_persona, add_samples, chat, make_ws

REPO = Path(__file__).resolve().parents[1]
# `persona-studio ARGS` with the detached worker not started (the job stays queued).
NO_WORKER = ("import sys; import persona_studio.train.jobs as j; j.launch = lambda job_dir: 0; "
             "from persona_studio.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.fixture
def ws(tmp_path: Path, tiny_model: Path):
    ws = make_ws(tmp_path / "ws", tiny_model)
    add_persona(ws, "alice")
    add_samples(ws, "alice", [chat(PROMPT, REPLY)])
    return ws


def job_dirs(ws) -> list[Path]:
    return sorted(d for d in ws.jobs_dir.iterdir() if d.is_dir()) if ws.jobs_dir.is_dir() else []


def test_two_trains_at_the_same_moment_queue_one_job(ws) -> None:
    argv = [sys.executable, "-c", NO_WORKER, "-w", str(ws.root), "train", "--persona", "alice", "--json"]
    procs = [subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert sorted(rc for rc, _, _ in results) == [0, 2], results
    (winner,) = [json.loads(out) for rc, out, _ in results if rc == 0]
    (loser_err,) = [err for rc, _, err in results if rc == 2]
    assert loser_err.strip() == (f"persona-studio: error: persona 'alice': job {winner['job_id']} "
                                 "is already queued")
    assert [d.name for d in job_dirs(ws)] == [winner["job_id"]]


def plant(path: Path, marker: Path) -> None:
    """A pickle that creates `marker` when it is unpickled."""

    class Planted:
        def __reduce__(self):  # noqa: ANN204 - pickle protocol
            return (open, (str(marker), "w"))

    path.write_bytes(pickle.dumps({"state": Planted(), "param_groups": []}))


def failed_job_with_checkpoint(ws) -> Path:
    import torch
    from safetensors.torch import save_file

    job_dir = jobs.create_job(ws, "alice")
    jobs.write_status(job_dir, state="failed", error="killed")
    ckpt = job_dir / "checkpoints" / "step-000002"
    ckpt.mkdir(parents=True)
    save_file({"x": torch.zeros(1)}, ckpt / "adapter.safetensors")
    torch.save({"base_lrs": [0.1], "last_epoch": 2}, ckpt / "scheduler.pt")
    torch.save({"torch": torch.get_rng_state()}, ckpt / "rng.pt")
    torch.save({"state": {}, "param_groups": []}, ckpt / "optimizer.pt")
    (ckpt / "rng.json").write_text(json.dumps({"python": [3, [1] * 625, None],
                                               "numpy": ["MT19937", [1] * 624, 624, 0, 0.0]}))
    (ckpt / "state.json").write_text(json.dumps({"step": 2, "elapsed": 1.0}))
    return ckpt


def test_resume_never_runs_code_planted_in_a_checkpoint(ws, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from persona_studio.train import loop

    ckpt = failed_job_with_checkpoint(ws)
    assert loop.read_checkpoint(ckpt)["state"]["step"] == 2  # the honest checkpoint loads
    marker = tmp_path / "pwned"
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt"):
        honest = (ckpt / name).read_bytes()
        plant(ckpt / name, marker)
        pickle.loads((ckpt / name).read_bytes())  # the plant works: unpickling it runs code
        assert marker.exists()
        marker.unlink()
        rc = main(["-w", str(ws.root), "train", "--persona", "alice", "--resume"])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1, err
        assert f"{ckpt / name}: not loaded: it holds pickled objects" in err
        assert not marker.exists()
        assert jobs.job_status(ckpt.parents[1])["state"] == "failed"  # never relaunched
        (ckpt / name).write_bytes(honest)
    # The worker's own load goes through the same safe reader.
    plant(ckpt / "optimizer.pt", marker)
    with pytest.raises(loop.TrainError, match="not loaded"):
        loop.load_checkpoint(ckpt, None, None, None)
    assert not marker.exists()


def test_base_model_not_on_this_machine_stops_train_before_a_job(ws, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    for name in ("someone/not-downloaded-model", str(tmp_path / "no-such-dir")):
        settings = json.loads(ws.settings_path.read_text())
        settings["model"]["name_or_path"] = name
        ws.settings_path.write_text(json.dumps(settings))
        rc = main(["-w", str(ws.root), "train", "--persona", "alice"])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1, err
        assert f"model.name_or_path: {name}:" in err
        assert job_dirs(ws) == []


def test_resume_refuses_a_job_whose_base_model_is_gone(ws, tmp_path: Path, tiny_model: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    copy = tmp_path / "model-copy"
    shutil.copytree(tiny_model, copy)
    settings = json.loads(ws.settings_path.read_text())
    settings["model"]["name_or_path"] = str(copy)
    ws.settings_path.write_text(json.dumps(settings))
    ckpt = failed_job_with_checkpoint(type(ws).open(ws.root))
    shutil.rmtree(copy)
    rc = main(["-w", str(ws.root), "train", "--persona", "alice", "--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no such model directory" in err, err
    assert jobs.job_status(ckpt.parents[1])["state"] == "failed"


def test_job_start_lock_leaves_no_stale_lock(ws) -> None:
    """flock, not a lock file: a start killed while holding it blocks nobody afterwards."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os, sys; from persona_studio.workspace import Workspace; "
         "from persona_studio.train import jobs; ws = Workspace.open(sys.argv[1]); "
         "cm = jobs._start_lock(ws, 'alice'); cm.__enter__(); os._exit(9)", str(ws.root)],
        cwd=REPO, timeout=60)
    assert proc.returncode == 9
    assert (ws.state_dir / "locks" / "train-start-alice.lock").exists()
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", NO_WORKER, "-w", str(ws.root), "train", "--persona", "alice"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr


def test_hostile_job_files_do_not_crash_jobs_listing(ws, capsys: pytest.CaptureFixture[str]) -> None:
    bad = ws.jobs_dir / "20240101-000000-alice"
    bad.mkdir(parents=True)
    (bad / "status.json").write_text("[" * 100_000 + "]" * 100_000)
    (bad / "metrics.jsonl").write_text('{"step": 1}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    assert main(["-w", str(ws.root), "jobs", "--json"]) == 0
    (job,) = json.loads(capsys.readouterr().out)
    assert job["state"] == "failed"
    assert jobs.read_metrics(bad) == [{"step": 1}, {}] and jobs.last_metrics(bad) is None
