"""The Export stage: pick a persona and what to export, where to, and run it in a thread.

The screen only gathers choices and shows progress; what each kind does lives in
persona_studio.export.kinds (headless, shared with tests), so torch & co. are imported by the
worker thread, never on the UI thread.
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, ProgressBar, Select, Static

from persona_studio.errors import UserError
from persona_studio.tui.screens.base import StageScreen


class ExportScreen(StageScreen):
    PERSONA_SELECT = "#export-persona"
    STAGE_TITLE = "Export"
    BINDINGS = [Binding("ctrl+r", "export", "Export")]

    class Progress(Message):
        def __init__(self, step: str, fraction: float):
            super().__init__()
            self.step, self.fraction = step, fraction

    class Finished(Message):
        def __init__(self, summary: str | None, error: str | None):
            super().__init__()
            self.summary, self.error = summary, error

    def compose_body(self) -> ComposeResult:
        from persona_studio.export.kinds import available_kinds

        yield Static("Export merged models, adapters, datasets, character cards and the vllm serve "
                     "command. Tab moves, enter opens a list, ctrl+r exports.", classes="hint")
        with Horizontal(id="export-pick"):
            yield Select([], prompt="persona", id="export-persona", allow_blank=True)
            yield Select(available_kinds(), value="model", id="export-kind", allow_blank=False)
        with Horizontal(id="export-where"):
            yield Input(placeholder="output path (relative to the workspace)", id="export-out")
            yield Button("Export", id="export-run", variant="primary")
        yield Checkbox("replace an existing output", id="export-force")
        yield ProgressBar(id="export-progress", show_eta=False)
        yield Static("", id="export-result")

    def on_mount(self) -> None:
        self._auto_out = ""
        sel = self.query_one("#export-persona", Select)
        self._load_personas()
        # A Select draws its border on its inner SelectCurrent, so the titles go there.
        self.query_one("#export-persona SelectCurrent").border_title = "persona"
        self.query_one("#export-kind SelectCurrent").border_title = "export"
        self.query_one("#export-out", Input).border_title = "output path"
        self.query_one("#export-progress", ProgressBar).update(total=1.0, progress=0.0)
        self._refresh_out()
        sel.focus()

    def _load_personas(self) -> None:
        self.fill_personas("#export-persona")

    # -- choices -------------------------------------------------------------------------------
    def _choice(self) -> tuple[str, str]:
        persona = self.query_one("#export-persona", Select).value
        kind = self.query_one("#export-kind", Select).value
        return (persona if isinstance(persona, str) else ""), (kind if isinstance(kind, str) else "model")

    def _rel(self, path: Path) -> str:
        root = self.workspace.root
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    @on(Select.Changed)
    def _refresh_out(self) -> None:
        from persona_studio.export.kinds import default_out

        persona, kind = self._choice()
        box = self.query_one("#export-out", Input)
        # Follow the choices only while the user hasn't typed a path of their own.
        if box.value and box.value != self._auto_out:
            return
        self._auto_out = self._rel(default_out(self.workspace, kind, persona)) if persona or kind == "serve" else ""
        box.value = self._auto_out

    def out_path(self) -> Path | None:
        raw = self.query_one("#export-out", Input).value.strip()
        if not raw:
            return None
        p = Path(raw).expanduser()
        return p if p.is_absolute() else self.workspace.root / p

    # -- running -------------------------------------------------------------------------------
    @on(Button.Pressed, "#export-run")
    @on(Input.Submitted, "#export-out")
    def action_export(self) -> None:
        persona, kind = self._choice()
        out = self.out_path()
        result = self.query_one("#export-result", Static)
        if not persona and kind != "serve":
            result.update("[b red]pick a persona first[/]")
            return
        if out is None:
            result.update("[b red]enter an output path[/]")
            return
        force = self.query_one("#export-force", Checkbox).value
        self.query_one("#export-run", Button).disabled = True
        self.query_one("#export-progress", ProgressBar).update(total=1.0, progress=0.0)
        result.update(f"exporting {kind} of {persona or 'all personas'}…")
        self.run_export(kind, persona, out, force)

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def run_export(self, kind: str, persona: str, out: Path, force: bool) -> None:
        from persona_studio.export.kinds import run_export

        def progress(step: str, fraction: float) -> None:
            self.post_message(self.Progress(step, fraction))

        try:
            summary = run_export(self.workspace, kind, persona, out, force=force, progress=progress)
        except UserError as exc:
            self.post_message(self.Finished(None, str(exc)))
        except Exception as exc:  # a library failure still ends as one readable line in the pane
            first = (str(exc).strip().splitlines() or [""])[0]
            self.post_message(self.Finished(None, f"{type(exc).__name__}: {first}"))
        else:
            self.post_message(self.Finished(summary, None))

    @on(Progress)
    def _progress(self, msg: Progress) -> None:
        self.query_one("#export-progress", ProgressBar).update(total=1.0, progress=msg.fraction)
        self.query_one("#export-result", Static).update(f"{msg.step}…")

    @on(Finished)
    def _finished(self, msg: Finished) -> None:
        self.query_one("#export-run", Button).disabled = False
        result = self.query_one("#export-result", Static)
        if msg.error:
            result.update(f"[b red]error:[/] {_escape(msg.error)}")
            return
        self.query_one("#export-progress", ProgressBar).update(total=1.0, progress=1.0)
        result.update(f"[b green]done:[/] {_escape(msg.summary or '')}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
