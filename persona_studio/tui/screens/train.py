"""The Train stage: start/cancel/resume QLoRA jobs and watch them live.

Jobs run as detached processes (persona_studio.train.jobs); this screen only reads their
files — status.json, metrics.jsonl, train.log — so it reattaches to a running job whenever the
studio is reopened, and closing it never stops training.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, Select, Static
from textual_plotext import PlotextPlot

from persona_studio.errors import UserError
from persona_studio.tui.screens.base import StageScreen


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def device_memory(pid: int | None) -> str:
    """GPU memory in use (nvidia-smi) or, on the CPU, the worker's resident memory."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=2,
            ).stdout.split("\n")[0]
            used, total = (int(x) for x in out.split(","))
            return f"GPU {used / 1024:.1f}/{total / 1024:.0f} GiB"
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    if pid:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return f"RAM {int(line.split()[1]) / 2**20:.1f} GiB"
        except OSError:
            pass
    return "-"


def samples_text(job_dir: str) -> str:
    """The newest probe replies of a job, one line per question (empty until the first sampling step)."""
    from persona_studio.eval.samples import read_samples

    found = read_samples(job_dir)
    if not found:
        return ""
    last = found[-1]
    lines = [f"samples at step {last['step']}:"]
    lines += [f"  {s['question']} → {' '.join(s['reply'].split())[:200]}" for s in last["samples"]]
    return "\n".join(lines)


TRAIN_FIELDS = ("quantization", "lora_rank", "learning_rate", "num_train_epochs", "max_steps", "cutoff_len")


class TrainSettings(ModalScreen[dict | None]):
    """Overrides of train_sft_args for the next job, validated by the settings schema."""

    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, values: dict[str, Any]):
        super().__init__()
        self.values = values

    def compose(self) -> ComposeResult:
        with Vertical(id="train-settings"):
            yield Label("Training settings for the next job — ctrl+s save, esc cancel")
            for name in TRAIN_FIELDS:
                yield Label(name)
                yield Input(str(self.values[name]), id=f"t-{name}")
            yield Static("", id="train-settings-error")

    def action_save(self) -> None:
        import json

        from persona_studio import settings

        raw: dict[str, Any] = {}
        for name in TRAIN_FIELDS:
            text = self.query_one(f"#t-{name}", Input).value.strip()
            try:
                raw[name] = json.loads(text)
            except ValueError:
                raw[name] = text  # a bare word such as nf4
        try:
            parsed = settings.parse(json.dumps({"train_sft_args": raw}), "train settings")
        except settings.SettingsError as exc:
            self.query_one("#train-settings-error", Static).update(f"[b red]{escape(str(exc))}[/]")
            return
        self.dismiss({k: getattr(parsed.train_sft_args, k) for k in TRAIN_FIELDS})

    def action_cancel(self) -> None:
        self.dismiss(None)


class TrainScreen(StageScreen):
    PERSONA_SELECT = "#train-persona"
    STAGE_TITLE = "Train"
    BINDINGS = [
        Binding("s", "start", "Start"),
        Binding("R", "resume", "Resume"),
        Binding("c", "cancel", "Cancel job"),
        Binding("l", "toggle_log", "Log/plot"),
        Binding("o", "options", "Settings"),
        Binding("p", "prefs", "Preferences"),
    ]

    class Polled(Message):
        def __init__(self, jobs: list[Any], metrics: list[dict[str, Any]], log: list[str], memory: str):
            super().__init__()
            self.jobs, self.metrics, self.log, self.memory = jobs, metrics, log, memory

    class Done(Message):
        def __init__(self, text: str, error: bool):
            super().__init__()
            self.text, self.error = text, error

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="toolbar"):
            yield Select([], prompt="persona", id="train-persona")
            # sft = on the samples; dpo/orpo = on preference pairs, from the current adapter
            yield Select([("SFT", "sft"), ("DPO", "dpo"), ("ORPO", "orpo")], value="sft", allow_blank=False,
                         id="train-method")
            yield Button("Start", id="train-start", variant="primary")
            yield Button("Resume", id="train-resume")
            yield Button("Cancel", id="train-cancel", variant="error")
        with Horizontal(id="train-main"):
            yield DataTable(id="train-jobs", cursor_type="row")
            with Vertical(id="train-right"):
                yield PlotextPlot(id="train-plot")
                yield Static("", id="train-log", markup=False)
                # probe replies the worker writes every eval.sample_every_steps (eval/samples.py)
                yield Static("", id="train-samples", markup=False)
        yield ProgressBar(id="train-progress", show_eta=False, total=1)  # static until a job shows: see import_.py
        yield Static("no job selected", id="train-stats")

    def on_mount(self) -> None:
        self.fill_personas("#train-persona")
        table = self.query_one("#train-jobs", DataTable)
        # State is a fixed width: an auto width is set by the first value ("queued") and a job
        # that then runs showed as "runnin".
        table.add_column("job")
        table.add_column("state", width=len("cancelled"))  # the longest state (train/jobs.py)
        table.add_column("step")
        self.query_one("#train-log").display = False
        self.selected: str | None = None
        self.overrides: dict[str, Any] = {}
        self.metrics: list[dict[str, Any]] = []
        self.jobs: list[Any] = []
        self.poll()
        self.set_interval(1.0, self.poll)

    # -- polling (off the UI thread: reading job files may import the trainer's helpers) --------
    @work(thread=True, exclusive=True, exit_on_error=False, group="train-poll")
    def poll(self) -> None:
        from persona_studio.train import jobs as jobs_mod

        jobs = jobs_mod.list_jobs(self.workspace)
        job = next((j for j in jobs if j.job_id == self.selected), jobs[-1] if jobs else None)
        metrics, log, mem = [], [], "-"
        if job is not None:
            metrics = [m for m in jobs_mod.read_metrics(job.job_dir) if m]
            log = jobs_mod.tail_log(job.job_dir, 12)
            mem = device_memory(job.pid) if job.state == "running" else "-"
        msg = self.Polled(jobs, metrics, log, mem)
        msg.samples = samples_text(job.job_dir) if job is not None else ""  # type: ignore[attr-defined]
        from persona_studio.train.pref_jobs import job_pairs

        msg.pairs = job_pairs(job.job_dir) if job is not None else {}  # type: ignore[attr-defined]
        self.post_message(msg)

    @on(Polled)
    def _polled(self, msg: Polled) -> None:
        self.jobs = msg.jobs
        table = self.query_one("#train-jobs", DataTable)
        ids = [j.job_id for j in msg.jobs]
        if [str(r.value) for r in table.rows] != ids:
            if self.selected not in ids:  # first visit: the running job, else the newest
                active = [j.job_id for j in msg.jobs if j.state in ("running", "queued")]
                self.selected = (active or ids or [None])[-1]
            # Rebuilding moves the cursor, which must not change the selection (a job just
            # started would lose it to row 0).
            with self.prevent(DataTable.RowHighlighted):
                table.clear()
                for j in msg.jobs:
                    table.add_row(j.job_id, j.state, "", key=j.job_id)
                if self.selected in ids:
                    table.move_cursor(row=ids.index(self.selected))
        for j in msg.jobs:
            table.update_cell(j.job_id, table.columns[list(table.columns)[1]].key, j.state)
            table.update_cell(j.job_id, table.columns[list(table.columns)[2]].key, f"{j.step}/{j.total_steps}")
        job = self.current_job()
        if job is None:
            return
        self.metrics = msg.metrics
        self.draw_plot()
        last = msg.metrics[-1] if msg.metrics else {}
        total = last.get("total_steps") or job.total_steps or None
        self.query_one("#train-progress", ProgressBar).update(total=total, progress=last.get("step", job.step))
        parts = [f"{job.job_id}: {job.state}"]
        pairs = getattr(msg, "pairs", {})
        if pairs:  # a preference run: how many pairs from which sources went in
            by = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(pairs.items()))
            parts.append(f"{sum(pairs.values())} pairs ({by})")
        if last:
            parts.append(f"loss {last['loss']:.4f}")
            if last.get("reward_margin") is not None:
                parts.append(f"margin {last['reward_margin']:.3f} acc {last.get('accuracy', 0):.2f}")
            evals = [m["eval_loss"] for m in msg.metrics if m.get("eval_loss") is not None]
            if evals:
                parts.append(f"eval {evals[-1]:.4f}")
            parts += [f"{last.get('tokens_per_s', 0):.0f} tok/s", f"ETA {_fmt_s(last.get('eta'))}"]
        parts.append(msg.memory)
        if job.error:
            parts.append(f"[b red]error: {escape(job.error)}[/]")
        self.query_one("#train-stats", Static).update(" · ".join(parts))
        self.query_one("#train-log", Static).update("\n".join(msg.log) or "(log is empty)")
        self.query_one("#train-samples", Static).update(getattr(msg, "samples", ""))

    def current_job(self) -> Any | None:
        return next((j for j in self.jobs if j.job_id == self.selected), self.jobs[-1] if self.jobs else None)

    @on(DataTable.RowHighlighted, "#train-jobs")
    def _pick(self, event: DataTable.RowHighlighted) -> None:
        self.selected = event.row_key.value
        self.poll()

    def draw_plot(self) -> None:
        plot = self.query_one("#train-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.title("loss")
        steps = [m["step"] for m in self.metrics if m.get("loss") is not None]
        if steps:
            plt.plot(steps, [m["loss"] for m in self.metrics if m.get("loss") is not None], label="train")
        ev = [(m["step"], m["eval_loss"]) for m in self.metrics if m.get("eval_loss") is not None]
        if ev:
            plt.plot([s for s, _ in ev], [v for _, v in ev], label="eval", marker="dot")
        margin = [(m["step"], m["reward_margin"]) for m in self.metrics if m.get("reward_margin") is not None]
        if margin:  # preference runs: the chosen-over-rejected reward margin should climb
            plt.title("loss · reward margin")
            plt.plot([s for s, _ in margin], [v for _, v in margin], label="margin")
        plot.refresh()

    # -- actions ------------------------------------------------------------------------------
    def persona(self) -> str | None:
        v = self.query_one("#train-persona", Select).value
        return v if isinstance(v, str) else None

    @on(Button.Pressed, "#train-start")
    def action_start(self) -> None:
        if (p := self.persona()) is not None:
            self.query_one("#train-stats", Static).update(f"checking {p}'s data and model…")
            self.control("start", p, str(self.query_one("#train-method", Select).value))

    @on(Button.Pressed, "#train-resume")
    def action_resume(self) -> None:
        if (p := self.persona()) is not None:
            self.control("resume", p)

    @on(Button.Pressed, "#train-cancel")
    def action_cancel(self) -> None:
        job = self.current_job()
        if job is not None:
            self.control("cancel", job.job_id)

    def action_options(self) -> None:
        current = vars(self.workspace.settings.train_sft_args) | self.overrides

        def done(values: dict | None) -> None:
            if values is not None:
                self.overrides = values
                self.query_one("#train-stats", Static).update(
                    "next job: " + ", ".join(f"{k} {v}" for k, v in values.items()))

        self.app.push_screen(TrainSettings(current), done)

    def action_prefs(self) -> None:
        """The preference pairs a DPO/ORPO run trains on (view, edit, delete)."""
        from persona_studio.tui.screens.prefs import PrefsScreen

        self.app.push_screen(PrefsScreen(self.persona()))

    def job_workspace(self) -> Any:
        """The workspace with this screen's overrides applied (the job saves the resolved spec)."""
        import dataclasses

        ws = self.workspace
        if not self.overrides:
            return ws
        t = dataclasses.replace(ws.settings.train_sft_args, **self.overrides)
        return dataclasses.replace(ws, settings=dataclasses.replace(ws.settings, train_sft_args=t))

    def action_toggle_log(self) -> None:
        log, plot = self.query_one("#train-log"), self.query_one("#train-plot")
        log.display, plot.display = not log.display, log.display

    @work(thread=True, exit_on_error=False, group="train-control")
    def control(self, what: str, target: str, method: str = "sft") -> None:
        from persona_studio.train import jobs as jobs_mod

        try:
            if what == "cancel":
                job = jobs_mod.cancel_job(self.workspace, target)
                text = f"cancelling {job.job_id} (it saves a checkpoint first)"
            else:
                job = jobs_mod.start_job(self.job_workspace(), target, resume=what == "resume", method=method)
                self.selected = job.job_id
                text = f"{'resumed' if what == 'resume' else 'started'} {job.job_id}"
        except UserError as exc:
            self.post_message(self.Done(str(exc), True))
            return
        self.post_message(self.Done(text, False))

    @on(Done)
    def _done(self, msg: Done) -> None:
        self.notify(msg.text, severity="error" if msg.error else "information", timeout=8)
        if msg.error:
            self.query_one("#train-stats", Static).update(f"[b red]{escape(msg.text)}[/]")
        self.poll()
