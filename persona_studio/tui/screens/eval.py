"""The Eval stage: does each adapter sound like the real person, and which one is best?

A table of adapters x metrics (the best value of each marked), a bar chart of the reference
scores, and a viewer with one held-out conversation: the real reply beside every adapter's
reply (n / p step through them; v switches to the probe questions). s starts an eval run in a
thread worker (persona_studio.eval.run, headless), c cancels it; a cancelled run keeps nothing.
"""

from __future__ import annotations

import threading
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, ProgressBar, Select, Static
from textual_plotext import PlotextPlot

from persona_studio.tui.screens.base import StageScreen

COLUMNS = [("loss", "loss"), ("perplexity", "ppl"), ("bleu", "BLEU"), ("chrf", "chrF"), ("rouge_l", "ROUGE-L"),
           ("style_distance", "style")]
STAGE_NAMES = {"loss": "held-out loss", "engine": "starting engine", "generate": "generating replies"}


class EvalScreen(StageScreen):
    PERSONA_SELECT = "#eval-persona"
    STAGE_TITLE = "Eval"
    BINDINGS = [
        Binding("s", "start", "Start eval"),
        Binding("c", "cancel", "Cancel"),
        Binding("n", "next", "Next"),
        Binding("p", "prev", "Previous"),
        Binding("v", "toggle_view", "Held-out/probes"),
    ]

    class Loaded(Message):
        def __init__(self, persona: str, result: dict[str, Any] | None):
            super().__init__()
            self.persona, self.result = persona, result

    class Progressed(Message):
        def __init__(self, stage: str, done: int, total: int):
            super().__init__()
            self.stage, self.done, self.total = stage, done, total

    class Finished(Message):
        def __init__(self, persona: str, result: dict[str, Any] | None, error: str | None, cancelled: bool):
            super().__init__()
            self.persona, self.result, self.error, self.cancelled = persona, result, error, cancelled

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="toolbar"):
            yield Select([], prompt="persona", id="eval-persona")
            yield Button("Start", id="eval-start", variant="primary")
            yield Button("Cancel", id="eval-cancel", variant="error")
        with Horizontal(id="eval-main"):
            yield DataTable(id="eval-table", cursor_type="row", zebra_stripes=True)
            yield PlotextPlot(id="eval-chart")
        yield Static("", id="eval-viewer-title")
        with VerticalScroll(id="eval-viewer"):
            yield Horizontal(id="eval-side")
        yield ProgressBar(id="eval-progress", show_eta=False, total=1)  # static until a run: see import_.py
        yield Static("no eval run yet: press s to start one", id="eval-status")

    def on_mount(self) -> None:
        self.result: dict[str, Any] | None = None
        self.index = 0
        self.view = "heldout"
        self.cancel_event: threading.Event | None = None
        table = self.query_one("#eval-table", DataTable)
        table.add_columns("#", "adapter", *(title for _, title in COLUMNS))
        self.fill_personas("#eval-persona")
        self.load()

    # -- reading stored results --------------------------------------------------------------------
    def persona(self) -> str | None:
        v = self.query_one("#eval-persona", Select).value
        return v if isinstance(v, str) else None

    @on(Select.Changed, "#eval-persona")
    def _persona_changed(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval-load")
    def load(self) -> None:
        from persona_studio.eval import report

        pid = self.persona()
        self.post_message(self.Loaded(pid or "", report.latest(self.workspace, pid) if pid else None))

    @on(Loaded)
    def _loaded(self, msg: Loaded) -> None:
        if msg.persona != (self.persona() or ""):
            return
        self.show(msg.result)
        if msg.result is None and self.cancel_event is None:
            self.set_status(f"{msg.persona or 'no persona'}: no eval run yet: press s to start one")

    def show(self, result: dict[str, Any] | None) -> None:
        self.result, self.index = result, 0
        table = self.query_one("#eval-table", DataTable)
        table.clear()
        if result is None:
            self.draw_chart()
            self.draw_viewer()
            return
        best = result["best"]
        for a in result["adapters"]:
            cells = []
            for metric, _ in COLUMNS:
                text = _fmt(metric, a.get(metric))
                cells.append(Text(f"★{text}", style="bold green") if best.get(metric) == a["label"] else Text(text))
            table.add_row(str(a["rank"]), a["label"], *cells, key=a["label"])
        warn = f" · [yellow]{escape(result['warnings'][0])}[/]" if result["warnings"] else ""
        self.set_status(f"run {result['run_id']} · {result['n_heldout']} held-out conversations · "
                        f"★ best · {result.get('finished_at', '')}{warn}")
        self.draw_chart()
        self.draw_viewer()

    def draw_chart(self) -> None:
        plot = self.query_one("#eval-chart", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("reference overlap (higher is better)")
        if self.result:
            labels = [a["label"] for a in self.result["adapters"]]
            series = [[a.get(m) or 0.0 for a in self.result["adapters"]] for m in ("bleu", "chrf", "rouge_l")]
            plt.multiple_bar(labels, series, labels=["BLEU", "chrF", "ROUGE-L"])
        plot.refresh()

    def draw_viewer(self) -> None:
        side = self.query_one("#eval-side", Horizontal)
        side.remove_children()
        title = self.query_one("#eval-viewer-title", Static)
        r = self.result
        rows = (r["items"] if self.view == "heldout" else r["probes"]) if r else []
        if not rows:
            title.update("")
            return
        self.index %= len(rows)
        row = rows[self.index]
        labels = [a["label"] for a in r["adapters"]]  # type: ignore[index]
        if self.view == "heldout":
            asked = next((m["content"] for m in reversed(row["history"]) if m["role"] == "user"), "")
            title.update(f"held-out {self.index + 1}/{len(rows)} (n/p, v: probes) · they said: {escape(asked)}")
            columns = [("real", row["real"])] + [(x, row["replies"][x]) for x in labels]
        else:
            title.update(f"probe {self.index + 1}/{len(rows)} (n/p, v: held-out) · {escape(row['question'])}")
            columns = [(x, row["replies"][x]) for x in labels]
        for label, text in columns:
            box = Vertical(Static(Text(text or "(empty)"), classes="eval-reply"), classes="eval-col")
            box.border_title = label
            side.mount(box)

    # -- running ------------------------------------------------------------------------------------
    @on(Button.Pressed, "#eval-start")
    def action_start(self) -> None:
        pid = self.persona()
        if pid is None or self.cancel_event is not None:
            return
        self.cancel_event = threading.Event()
        self.set_status(f"evaluating {pid}…")
        self.run_eval(pid, self.cancel_event)

    @on(Button.Pressed, "#eval-cancel")
    def action_cancel(self) -> None:
        if self.cancel_event is not None:
            self.cancel_event.set()
            self.set_status("cancelling (after the current batch)…")

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval-run")
    def run_eval(self, pid: str, cancel: threading.Event) -> None:
        from persona_studio.errors import UserError
        from persona_studio.eval.generate import Cancelled
        from persona_studio.eval.run import run_eval

        engine = getattr(self.app, "engine", None)  # the studio's engine when it is up: no second start
        try:
            result = run_eval(self.workspace, pid, "all", progress=lambda s, d, t: self.post_message(
                self.Progressed(s, d, t)), cancel=cancel, engine=engine)
        except Cancelled:
            self.post_message(self.Finished(pid, None, None, True))
        except UserError as exc:
            self.post_message(self.Finished(pid, None, str(exc), False))
        except Exception as exc:  # noqa: BLE001 - shown in the status line, never a crash
            self.post_message(self.Finished(pid, None, f"{type(exc).__name__}: {exc}".splitlines()[0], False))
        else:
            self.post_message(self.Finished(pid, result, None, False))

    @on(Progressed)
    def _progressed(self, msg: Progressed) -> None:
        self.query_one("#eval-progress", ProgressBar).update(total=max(msg.total, 1), progress=msg.done)
        self.set_status(f"{STAGE_NAMES.get(msg.stage, msg.stage)} {msg.done}/{msg.total}")

    @on(Finished)
    def _finished(self, msg: Finished) -> None:
        self.cancel_event = None
        if msg.cancelled:
            self.set_status("eval cancelled: nothing was kept")
            self.notify("eval cancelled", timeout=5)
        elif msg.error:
            self.set_status(f"[b red]{escape(msg.error)}[/]")
            self.notify(msg.error, title="eval failed", severity="error", timeout=10)
        elif msg.persona == self.persona():
            self.show(msg.result)

    def set_status(self, text: str) -> None:
        self.query_one("#eval-status", Static).update(text)

    # -- viewer keys -----------------------------------------------------------------------------
    def action_next(self) -> None:
        self.index += 1
        self.draw_viewer()

    def action_prev(self) -> None:
        self.index -= 1
        self.draw_viewer()

    def action_toggle_view(self) -> None:
        self.view = "probes" if self.view == "heldout" else "heldout"
        self.index = 0
        self.draw_viewer()


def _fmt(metric: str, value: Any) -> str:
    from persona_studio.eval.report import fmt

    return fmt(metric, value)
