"""The Import stage: pick files, see format and speakers, choose "me", import + make-dataset."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Button, Input, OptionList, ProgressBar, Select, Static
from textual.widgets.option_list import Option

from persona_studio.errors import UserError
from persona_studio.tui.screens.base import StageScreen


class PathSuggester(Suggester):
    """Completes the last path on the line from the directory listing (tab/→ accepts)."""

    def __init__(self, root: Path):
        super().__init__(use_cache=False, case_sensitive=True)
        self.root = root

    async def get_suggestion(self, value: str) -> str | None:
        head, _, last = value.rpartition(" ")
        base = Path(last).expanduser()
        if not base.is_absolute():
            base = self.root / base
        folder, stem = (base, "") if last.endswith("/") else (base.parent, base.name)
        try:
            names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
        except OSError:
            return None
        for name in names:
            if name.startswith(stem) and name != stem and not name.startswith("."):
                return value + name[len(stem):]
        return None


class ImportScreen(StageScreen):
    PERSONA_SELECT = "#import-persona"
    STAGE_TITLE = "Import"
    BINDINGS = [Binding("ctrl+r", "run", "Import + make dataset"), Binding("ctrl+o", "scan", "Scan files")]

    class Scanned(Message):
        def __init__(self, info: list[dict[str, Any]], error: str | None):
            super().__init__()
            self.info, self.error = info, error

    class Progress(Message):
        def __init__(self, phase: str, done: int, total: int | None):
            super().__init__()
            self.phase, self.done, self.total = phase, done, total

    class Finished(Message):
        def __init__(self, summary: dict[str, Any] | None, error: str | None):
            super().__init__()
            self.summary, self.error = summary, error

    def compose_body(self) -> ComposeResult:
        yield Static("Import chat exports into a persona — WeChat CSV, Telegram, WhatsApp, QQ, Discord, "
                     "OpenAI/ShareGPT/Alpaca…", classes="hint")
        with Horizontal(classes="toolbar"):
            yield Input(placeholder="chat export file(s), space-separated — tab completes", id="import-files",
                        suggester=PathSuggester(self.app.workspace.root))  # type: ignore[attr-defined]
            yield Button("Scan", id="import-scan")
        with Horizontal(id="import-main"):
            with Vertical(id="import-left"):
                yield Static("Who is the persona (\"me\")?", classes="stage-title")
                yield OptionList(id="import-speakers")
            with Vertical(id="import-right"):
                yield Select([], prompt="persona", id="import-persona")
                yield Static("", id="import-format")
                yield Button("Import + make dataset", id="import-run", variant="primary", disabled=True)
                yield ProgressBar(id="import-progress", show_eta=True)
                yield Static("", id="import-summary")

    def on_mount(self) -> None:
        self.fill_personas("#import-persona")
        self.scanned: list[dict[str, Any]] = []

    def paths(self) -> list[Path]:
        raw = self.query_one("#import-files", Input).value.strip()
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = raw.split()
        root = self.workspace.root
        return [p if p.is_absolute() else root / p for p in (Path(x).expanduser() for x in parts)]

    @on(Input.Submitted, "#import-files")
    @on(Button.Pressed, "#import-scan")
    def action_scan(self) -> None:
        paths = self.paths()
        if not paths:
            self.query_one("#import-format", Static).update("enter at least one file")
            return
        self.query_one("#import-format", Static).update("scanning…")
        self.scan(paths)

    @work(thread=True, exclusive=True, exit_on_error=False, group="import-scan")
    def scan(self, paths: list[Path]) -> None:
        from persona_studio import ingest

        info = []
        try:
            for p in paths:
                if not p.is_file():
                    raise UserError(f"{p}: no such file")
                fmt = ingest.detect(p)
                info.append({"path": p, "format": fmt, "speakers": ingest.speakers(p, fmt)})
        except UserError as exc:
            self.post_message(self.Scanned([], str(exc)))
            return
        self.post_message(self.Scanned(info, None))

    @on(Scanned)
    def _scanned(self, msg: Scanned) -> None:
        fmt_box = self.query_one("#import-format", Static)
        speakers = self.query_one("#import-speakers", OptionList)
        speakers.clear_options()
        self.scanned = msg.info
        if msg.error:
            fmt_box.update(f"[b red]{escape(msg.error)}[/]")
            self.query_one("#import-run", Button).disabled = True
            return
        totals: dict[str, int] = {}
        for f in msg.info:
            for name, n in f["speakers"]:
                totals[name] = totals.get(name, 0) + n
        fmt_box.update("\n".join(f"{f['path'].name}: {f['format']}" for f in msg.info))
        for name, n in sorted(totals.items(), key=lambda kv: -kv[1]):
            speakers.add_option(Option(f"{name} · {n}", id=name))
        if totals:
            speakers.highlighted = 0
            speakers.focus()
        self.query_one("#import-run", Button).disabled = False

    def chosen_me(self) -> str | None:
        ol = self.query_one("#import-speakers", OptionList)
        if ol.highlighted is None or ol.option_count == 0:
            return None
        return ol.get_option_at_index(ol.highlighted).id

    @on(OptionList.OptionSelected, "#import-speakers")
    @on(Button.Pressed, "#import-run")
    def action_run(self) -> None:
        persona = self.query_one("#import-persona", Select).value
        if not isinstance(persona, str):
            self.query_one("#import-summary", Static).update("[b red]pick a persona first[/]")
            return
        if not self.scanned:
            self.action_scan()
            return
        me = self.chosen_me()
        generic = all(f["format"] in GENERIC for f in self.scanned)
        self.query_one("#import-run", Button).disabled = True
        self.query_one("#import-summary", Static).update(f"importing as {persona} (me = {me or 'roles in file'})…")
        self.run_import(persona, [f["path"] for f in self.scanned], None if generic else me)

    @work(thread=True, exclusive=True, exit_on_error=False, group="import-run")
    def run_import(self, persona: str, paths: list[Path], me: str | None) -> None:
        from persona_studio.clean.pipeline import make_dataset
        from persona_studio.importer import import_files

        try:
            imp = import_files(self.workspace, persona, paths, me,
                               progress=lambda d, t: self.post_message(self.Progress("import", d, t)))
        except UserError as exc:
            self.post_message(self.Finished(None, f"{exc}\nnothing was imported"))
            return
        try:
            ds = make_dataset(self.workspace, persona,
                              progress=lambda d, t: self.post_message(self.Progress("clean", d, t)))
        except UserError as exc:
            self.post_message(self.Finished(None, f"{exc}\nthe messages were imported; fix this and press ctrl+r"))
            return
        self.post_message(self.Finished({"import": imp, "dataset": ds}, None))

    @on(Progress)
    def _progress(self, msg: Progress) -> None:
        bar = self.query_one("#import-progress", ProgressBar)
        bar.update(total=msg.total, progress=msg.done)

    @on(Finished)
    def _finished(self, msg: Finished) -> None:
        self.query_one("#import-run", Button).disabled = False
        box = self.query_one("#import-summary", Static)
        if msg.error:
            box.update(f"[b red]{escape(msg.error)}[/]")
            return
        assert msg.summary is not None
        imp, ds = msg.summary["import"], msg.summary["dataset"]
        red = ", ".join(f"{k} {v}" for k, v in ds.get("redacted", {}).items()) or "none"
        skipped = ", ".join(f"{k} {v}" for k, v in ds["messages"]["skipped"].items()) or "none"
        box.update(
            f"[b]done[/]: {imp['imported']} file(s) imported, {imp['unchanged']} unchanged; "
            f"{imp.get('read', 0)} read, {imp.get('bad', 0)} bad lines\n"
            f"samples: {ds['samples']['total']} ({ds['samples']['new']} new) · redacted: {red}\n"
            f"skipped: {skipped} · blocked-word hits: {ds['blocked']['hits']}\n"
            f"suggested cutoff_len: {ds['tokens'].get('suggested_cutoff_len', '?')} — review them with key 2"
        )
        self.query_one("#import-progress", ProgressBar).update(total=1, progress=1)


GENERIC = {"openai", "sharegpt", "alpaca", "chatglm"}
