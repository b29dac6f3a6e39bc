"""The Import stage: pick files, see format and speakers, choose "me", import + make-dataset.

Keys: tab completes the path being typed (else moves on); ctrl+o scans; enter on a speaker
makes it "me" (it never starts an import); ctrl+r imports and builds the dataset; ctrl+z
undoes the persona's latest import (press twice); ctrl+f, right after make-dataset refused to
drop review work it could not carry over, re-makes the samples anyway (`make-dataset --force`).
The target persona follows the file's `personas/<id>/` folder, else it must be picked — or
"new persona…", created named after "me".
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Button, Input, OptionList, ProgressBar, Select, Static
from textual.widgets.option_list import Option

from persona_studio.errors import UserError
from persona_studio.tui.screens.base import StageScreen


def last_word(value: str) -> tuple[str, str | None]:
    """The last path on the line as the shell would read it (quotes and backslash escapes
    undone, as `paths()` splits with shlex), and the quote still open at the end, if any."""
    word: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(value):
        ch = value[i]
        if quote:
            if ch == quote:
                quote = None
            else:
                word.append(ch)
        elif ch == "\\" and i + 1 < len(value):
            i += 1
            word.append(value[i])
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            word = []
        else:
            word.append(ch)
        i += 1
    return "".join(word), quote


_SHELL_SPECIAL = re.compile(r"([\s'\"\\$`!*?&;|<>(){}\[\]#~])")


class PathSuggester(Suggester):
    """Completes the last path on the line from the directory listing (tab/→ accepts). Names
    with spaces (`WhatsApp Chat with Rosa.zip`) are completed escaped, so the line still splits
    into the right files."""

    def __init__(self, root: Path):
        super().__init__(use_cache=False, case_sensitive=True)
        self.root = root

    async def get_suggestion(self, value: str) -> str | None:
        last, quote = last_word(value)
        base = Path(last).expanduser()
        if not base.is_absolute():
            base = self.root / base
        folder, stem = (base, "") if last.endswith("/") or not last else (base.parent, base.name)
        try:
            names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
        except OSError:
            return None
        for name in names:
            if name.startswith(stem) and name != stem and not name.startswith("."):
                rest = name[len(stem):]
                if quote is None:
                    rest = _SHELL_SPECIAL.sub(r"\\\1", rest)
                elif not name.endswith("/"):
                    rest += quote  # a whole file name: close the quote the user opened
                return value + rest
        return None


class PathInput(Input):
    """An Input whose tab takes the path suggestion (the README's "tab completes"); with no
    suggestion showing, tab moves focus on as everywhere else."""

    BINDINGS = [Binding("tab", "complete", "Complete path", show=False)]
    _typing = False

    def start_typing(self, text: str) -> None:
        """Focus and type `text` (a key that reached the screen with nothing focused) without the
        select-all a focus does: the next key must add to the text, not replace it."""
        self._typing = True
        self.focus()
        self.insert_text_at_cursor(text)

    def _on_focus(self, event: events.Focus) -> None:
        keep = self.select_on_focus
        self.select_on_focus = keep and not self._typing
        self._typing = False
        try:
            super()._on_focus(event)
        finally:
            self.select_on_focus = keep
        event.prevent_default()  # Textual would call Input._on_focus again, selecting all

    def action_complete(self) -> None:
        if self._suggestion and self._suggestion != self.value:
            self.value = self._suggestion
            self.cursor_position = len(self.value)
        else:
            self.screen.focus_next()


NEW_PERSONA = "new persona…"


class ImportScreen(StageScreen):
    PERSONA_SELECT = "#import-persona"
    STAGE_TITLE = "Import"
    BINDINGS = [Binding("ctrl+r", "run", "Import + make dataset"), Binding("ctrl+o", "scan", "Scan files"),
                Binding("ctrl+z", "undo", "Undo last import"),
                Binding("ctrl+f", "force", "Re-make, dropping review work", show=False)]
    # The persona whose make-dataset refused to drop review work it could not carry over: ctrl+f
    # re-makes its samples anyway (the CLI's `make-dataset --force`), and only right after a refusal.
    force_pending: str | None = None

    class Undone(Message):
        def __init__(self, summary: dict[str, Any] | None, error: str | None):
            super().__init__()
            self.summary, self.error = summary, error

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

    def on_key(self, event: events.Key) -> None:
        """With nothing focused, typing starts the path (digits still switch stage): typing a file
        name is the first thing anyone does here, and keys typed into nothing were lost."""
        if self.focused is not None or not event.is_printable or not event.character or event.character.isdigit():
            return
        self.query_one("#import-files", PathInput).start_typing(event.character)
        event.stop()
        event.prevent_default()

    def compose_body(self) -> ComposeResult:
        yield Static("Import chat exports into a persona — WeChat CSV, Telegram, WhatsApp, QQ, Discord, "
                     "OpenAI/ShareGPT/Alpaca…", classes="hint")
        with Horizontal(classes="toolbar"):
            yield PathInput(placeholder="chat export file(s), space-separated — tab completes", id="import-files",
                            suggester=PathSuggester(self.app.workspace.root))  # type: ignore[attr-defined]
            yield Button("Scan", id="import-scan")
        with Horizontal(id="import-main"):
            with Vertical(id="import-left"):
                yield Static("Who is the persona (\"me\")? enter picks", classes="stage-title")
                yield OptionList(id="import-speakers")
                yield Static("me: —", id="import-me")
            with Vertical(id="import-right"):
                yield Select([], prompt="persona", id="import-persona")
                yield Static("", id="import-format")
                yield Button("Import + make dataset", id="import-run", variant="primary", disabled=True)
                # Hidden, and not indeterminate, until work runs: an indeterminate bar animates
                # (redraws 15 times a second) and would say "busy" on an idle stage.
                bar = ProgressBar(id="import-progress", show_eta=True, total=1)
                bar.display = False
                yield bar
                yield Static("", id="import-summary")

    def on_mount(self) -> None:
        self.scanned: list[dict[str, Any]] = []
        self.scan_error: str | None = None  # the last scan's refusal: ctrl+r says it, not "which persona?"
        self.me: str | None = None
        self.me_why: str | None = None  # why `me` was suggested; None once the user picked it
        self.undo_armed: int | None = None
        self.fill_personas("#import-persona")

    def fill_personas(self, selector: str, ids: list[str] | None = None) -> None:
        """The personas plus "new persona…"; nothing is preselected (unless there is only one
        persona, or one was chosen): importing into the wrong persona is the costly mistake."""
        ids = self.workspace.persona_ids() if ids is None else ids
        if getattr(self, "_persona_options", None) == (selector, ids):
            return
        self._persona_options = (selector, ids)
        sel = self.query_one(selector, Select)
        keep = sel.value if sel.value in ids else (ids[0] if len(ids) == 1 else None)
        sel.set_options([(p, p) for p in ids] + [(NEW_PERSONA, NEW_PERSONA)])
        if keep is not None:
            sel.value = keep

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
        self.scan_error = msg.error
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
            speakers.add_option(Option(f"{escape(name)} · {n}", id=name))
        self.me = None
        self._show_me()
        from persona_studio.importlog import persona_of_files

        owner = persona_of_files(self.workspace, [f["path"] for f in msg.info])
        select = self.query_one("#import-persona", Select)
        if owner is not None:
            select.value = owner
        elif not isinstance(select.value, str):
            self.query_one("#import-summary", Static).update(
                "which persona are these chats for? pick one in the persona list (or \"new persona…\")")
        if totals:
            speakers.highlighted = 0
            speakers.focus()
        self.me_why = None
        self.suggest_me()
        self.query_one("#import-run", Button).disabled = False

    @on(Select.Changed, "#import-persona")
    def _persona_changed(self) -> None:
        self.suggest_me()

    def suggest_me(self) -> None:
        """Offer the persona's usual speaker as "me" (importlog.suggest_me), highlighted, unless
        the user picked one: ctrl+r straight after a scan used to take whoever came first."""
        if not self.scanned or (self.me is not None and self.me_why is None):
            return
        self.me = self.me_why = None
        persona = self.query_one("#import-persona", Select).value
        speakers = self.query_one("#import-speakers", OptionList)
        names = [str(speakers.get_option_at_index(i).id) for i in range(speakers.option_count)]
        generic = all(f["format"] in GENERIC for f in self.scanned)
        if isinstance(persona, str) and persona != NEW_PERSONA and names and not generic:
            from persona_studio.importlog import suggest_me

            got = suggest_me(self.workspace, persona, names)
            if got is not None:
                self.me, self.me_why = got
                speakers.highlighted = names.index(self.me)
        self._show_me()

    def _show_me(self) -> None:
        label = self.query_one("#import-me", Static)
        if self.me is not None and self.me_why is not None:
            # short: the column is a third of an 80-column screen; the title says enter picks
            label.update(f"me: [b]{escape(self.me)}[/] (suggested: {escape(self.me_why)})")
        elif self.me is not None:
            label.update(f"me: [b]{escape(self.me)}[/]")
        elif all(f["format"] in GENERIC for f in self.scanned) and self.scanned:
            label.update("me: the file's assistant role")
        else:
            label.update("me: — (enter on a speaker)")

    @on(OptionList.OptionSelected, "#import-speakers")
    def _pick_me(self, event: OptionList.OptionSelected) -> None:
        """Enter on a speaker makes it "me"; starting the import stays ctrl+r / the button."""
        event.stop()
        self.me, self.me_why = event.option.id, None
        self._show_me()
        self.query_one("#import-run", Button).focus()

    def chosen_me(self) -> str | None:
        """The speaker picked with enter; else the highlighted one (ctrl+r straight after a scan)."""
        if self.me is not None:
            return self.me
        ol = self.query_one("#import-speakers", OptionList)
        if ol.highlighted is None or ol.option_count == 0:
            return None
        return ol.get_option_at_index(ol.highlighted).id

    def _new_persona_id(self, name: str) -> str:
        from persona_studio.persona.card import slug

        base = slug(name)
        taken = set(self.workspace.persona_ids())
        pid, n = base, 2
        while pid in taken or (self.workspace.personas_dir / pid).exists():
            pid, n = f"{base[:60]}-{n}", n + 1
        return pid

    @on(Button.Pressed, "#import-run")
    def action_run(self) -> None:
        self.undo_armed = None
        box = self.query_one("#import-summary", Static)
        if self.scan_error:
            box.update(f"[b red]nothing to import: {escape(self.scan_error)}[/] — fix the file list and scan again (ctrl+o)")
            return
        persona = self.query_one("#import-persona", Select).value
        if not isinstance(persona, str):
            box.update("[b red]which persona? pick one in the persona list (or \"new persona…\")[/]")
            self.query_one("#import-persona", Select).focus()
            return
        if not self.scanned:
            self.action_scan()
            return
        generic = all(f["format"] in GENERIC for f in self.scanned)
        me = None if generic else self.chosen_me()
        create = persona == NEW_PERSONA
        if create:
            if me is None and not generic:
                box.update("[b red]pick \"me\" first: the new persona is named after that speaker[/]")
                return
            persona = self._new_persona_id(me or "persona")
        self.query_one("#import-run", Button).disabled = True
        made = f"new persona {persona}, " if create else ""
        box.update(f"importing as {made}{persona} (me = {me or 'roles in file'})…")
        self.bar_working()
        self.run_import(persona, [f["path"] for f in self.scanned], me, create)

    @work(thread=True, exclusive=True, exit_on_error=False, group="import-run")
    def run_import(self, persona: str, paths: list[Path], me: str | None, create: bool = False) -> None:
        from persona_studio.clean.carry import ReviewWorkWouldBeLost
        from persona_studio.clean.pipeline import make_dataset
        from persona_studio.importer import import_files

        self.force_pending = None
        try:
            imp = import_files(self.workspace, persona, paths, me, create=create,
                               progress=lambda d, t: self.post_message(self.Progress("import", d, t)))
        except UserError as exc:
            self.post_message(self.Finished(None, f"{exc}\nnothing was imported"))
            return
        try:
            ds = make_dataset(self.workspace, persona,
                              progress=lambda d, t: self.post_message(self.Progress("clean", d, t)))
        except ReviewWorkWouldBeLost as exc:
            self.force_pending = persona
            self.post_message(self.Finished(None, f"{exc}\nthe messages were imported; press ctrl+f to re-make the "
                                                  "samples anyway and drop that review work"))
            return
        except UserError as exc:
            self.post_message(self.Finished(None, f"{exc}\nthe messages were imported; fix this and press ctrl+r"))
            return
        self.post_message(self.Finished({"import": imp, "dataset": ds}, None))

    def action_force(self) -> None:
        box = self.query_one("#import-summary", Static)
        if self.force_pending is None:
            box.update("nothing to force: ctrl+f follows a make-dataset that refused to drop review work")
            return
        persona, self.force_pending = self.force_pending, None
        self.query_one("#import-run", Button).disabled = True
        box.update(f"re-making {escape(persona)}'s samples, dropping the review work that cannot be carried over…")
        self.bar_working()
        self.run_forced(persona)

    @work(thread=True, exclusive=True, exit_on_error=False, group="import-run")
    def run_forced(self, persona: str) -> None:
        from persona_studio.clean.pipeline import make_dataset

        try:
            ds = make_dataset(self.workspace, persona, force=True,
                              progress=lambda d, t: self.post_message(self.Progress("clean", d, t)))
        except UserError as exc:
            self.post_message(self.Finished(None, str(exc)))
            return
        imp = {"persona": persona, "imported": 0, "unchanged": 0}
        self.post_message(self.Finished({"import": imp, "dataset": ds}, None))

    def bar_working(self) -> None:
        bar = self.query_one("#import-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)  # indeterminate until the first count arrives

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
            self.query_one("#import-progress", ProgressBar).display = False  # never left animating
            return
        assert msg.summary is not None
        imp, ds = msg.summary["import"], msg.summary["dataset"]
        dropped = ds.get("review", {}).get("dropped", 0)
        if imp.get("created_persona"):
            self.fill_personas("#import-persona")
            self.query_one("#import-persona", Select).value = imp["persona"]
        red = ", ".join(f"{k} {v}" for k, v in ds.get("redacted", {}).items()) or "none"
        skipped = ", ".join(f"{k} {v}" for k, v in ds["messages"]["skipped"].items()) or "none"
        box.update(
            f"[b]done[/]: {imp['imported']} file(s) imported, {imp['unchanged']} unchanged; "
            f"{imp.get('read', 0)} read, {imp.get('bad', 0)} bad lines\n"
            f"samples: {ds['samples']['total']} ({ds['samples']['new']} new) · redacted: {red}\n"
            f"skipped: {skipped} · blocked-word hits: {ds['blocked']['hits']}\n"
            f"suggested cutoff_len: {ds['tokens'].get('suggested_cutoff_len', '?')} — review them with key 2"
            f" · ctrl+z undoes this import" + (f"\ndropped the review work on {dropped} sample(s)" if dropped else "")
        )
        self.query_one("#import-progress", ProgressBar).update(total=1, progress=1)

    def action_undo(self) -> None:
        """First press names what would be undone; the second undoes it."""
        from persona_studio.importlog import list_imports

        box = self.query_one("#import-summary", Static)
        persona = self.query_one("#import-persona", Select).value
        if not isinstance(persona, str) or persona == NEW_PERSONA:
            box.update("[b red]pick the persona whose import to undo[/]")
            return
        latest = next(iter(list_imports(self.workspace, persona)), None)
        if latest is None:
            self.undo_armed = None
            box.update(f"{escape(persona)} has no imports to undo")
            return
        if self.undo_armed != latest["id"]:
            self.undo_armed = latest["id"]
            box.update(f"[b]press ctrl+z again[/] to undo import {latest['id']} of {escape(persona)}: "
                       f"{escape(Path(latest['path']).name)}, {latest['messages']:,} messages "
                       "(its messages and the samples only they made are removed)")
            return
        self.undo_armed = None
        box.update(f"undoing import {latest['id']}…")
        self.run_undo(latest["id"])

    @work(thread=True, exclusive=True, exit_on_error=False, group="import-run")
    def run_undo(self, import_id: int) -> None:
        from persona_studio.importlog import undo_import

        try:
            self.post_message(self.Undone(undo_import(self.workspace, import_id), None))
        except UserError as exc:
            self.post_message(self.Undone(None, str(exc)))

    @on(Undone)
    def _undone(self, msg: Undone) -> None:
        from persona_studio.importlog import describe

        box = self.query_one("#import-summary", Static)
        if msg.error:
            box.update(f"[b red]{escape(msg.error)}[/]")
        else:
            assert msg.summary is not None
            box.update(escape(describe(msg.summary)))


GENERIC = {"openai", "sharegpt", "alpaca", "chatglm"}
