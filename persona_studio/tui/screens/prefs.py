"""The Preferences view: a persona's preference pairs (DPO/ORPO data) by source; view, edit, delete.

Opened from the Train stage (key p) or the command palette; escape goes back. Pairs are made elsewhere — editing or swiping a reply in Chat/Tea party, editing a persona turn in
Review, importing a DPO/KTO file — and train with `persona-studio train --method dpo|orpo`.
"""

from __future__ import annotations

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Select, Static, TextArea

from persona_studio.errors import UserError
from persona_studio.prefs import store as prefs
from persona_studio.termsafe import strip_controls
from persona_studio.tui.screens.base import StageScreen

SOURCE_FILTER = [("all sources", ""), *((s.replace("_", " "), s) for s in prefs.SOURCES)]


def _one_line(text: str, n: int) -> str:
    flat = " ".join(strip_controls(text).split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


class EditPair(ModalScreen[tuple[str, str] | None]):
    """Edit a pair's chosen and rejected replies; ctrl+s saves, escape cancels."""

    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, pair: prefs.Pair):
        super().__init__()
        self.pair = pair

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-dialog"):
            yield Label(f"Pair {self.pair.id} — chosen (top) and rejected (bottom); ctrl+s save, esc cancel")
            yield TextArea(strip_controls(self.pair.chosen), id="pair-chosen")
            yield TextArea(strip_controls(self.pair.rejected), id="pair-rejected")
            yield Static("", id="edit-error")

    def action_save(self) -> None:
        chosen = self.query_one("#pair-chosen", TextArea).text
        rejected = self.query_one("#pair-rejected", TextArea).text
        if not chosen.strip() or not rejected.strip() or chosen.strip() == rejected.strip():
            self.query_one("#edit-error", Static).update("[b red]chosen and rejected must be two different texts[/]")
            return
        self.dismiss((chosen, rejected))

    def action_cancel(self) -> None:
        self.dismiss(None)


class PrefsScreen(StageScreen):
    STAGE_TITLE = "Preferences"
    PERSONA_SELECT = "#prefs-persona"
    BINDINGS = [
        Binding("e", "edit", "Edit"),
        Binding("d", "delete", "Delete"),
        Binding("r", "reload", "Reload"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, persona: str | None = None):
        super().__init__()
        self.first_persona = persona

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="toolbar"):
            yield Select([], prompt="persona", id="prefs-persona", allow_blank=True)
            yield Select(SOURCE_FILTER, value="", allow_blank=False, id="prefs-source")
            yield Static("", id="prefs-counts")
        with Horizontal():
            yield DataTable(id="prefs-table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="prefs-detail-box"):
                yield Static("", id="prefs-detail")

    def on_mount(self) -> None:
        self.store = self.workspace.store()
        self.pairs: dict[int, prefs.Pair] = {}
        self.query_one("#prefs-table", DataTable).add_columns("id", "source", "context", "chosen", "rejected")
        self.fill_personas(self.PERSONA_SELECT)
        if self.first_persona in self.workspace.persona_ids():
            self.query_one("#prefs-persona", Select).value = self.first_persona
        self.action_reload()

    def action_back(self) -> None:
        self.app.pop_screen()

    def on_unmount(self) -> None:
        self.store.close()

    @property
    def persona(self) -> str | None:
        value = self.query_one("#prefs-persona", Select).value
        return value if isinstance(value, str) else None

    @on(Select.Changed)
    def _changed(self, _event: Select.Changed) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        table = self.query_one("#prefs-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        self.pairs = {}
        persona = self.persona
        counts = self.query_one("#prefs-counts", Static)
        if persona is None:
            counts.update("no personas yet")
            self._show(None)
            return
        source = self.query_one("#prefs-source", Select).value or None
        for p in prefs.list_pairs(self.store, persona, source=source, limit=2000):  # type: ignore[arg-type]
            self.pairs[p.id] = p
            table.add_row(str(p.id), p.source, _one_line(p.context, 24), _one_line(p.chosen, 24),
                          _one_line(p.rejected, 24), key=str(p.id))
        by = prefs.counts(self.store, persona)
        total = sum(by.values())
        parts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in by.items() if v)
        counts.update(f"{total} pair(s)" + (f": {parts}" if parts else " — edit or swipe replies in Chat to make some"))
        if self.pairs:
            table.move_cursor(row=min(cursor, len(self.pairs) - 1))
        self._show(self.current())

    def current(self) -> prefs.Pair | None:
        table = self.query_one("#prefs-table", DataTable)
        if not self.pairs or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.pairs.get(int(key)) if key is not None else None

    @on(DataTable.RowHighlighted)
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show(self.current())

    def _show(self, p: prefs.Pair | None) -> None:
        box = self.query_one("#prefs-detail", Static)
        if p is None:
            box.update("")
            return
        lines = [f"[b]pair {p.id}[/] · {p.source} · {escape(p.created_at)}"]
        if p.system:
            lines.append(f"[dim]system:[/] {escape(strip_controls(p.system))}")
        lines += [f"[dim]{t['role']}:[/] {escape(strip_controls(t['content']))}" for t in p.prompt]
        lines.append(f"\n[b green]chosen:[/] {escape(strip_controls(p.chosen))}")
        lines.append(f"\n[b red]rejected:[/] {escape(strip_controls(p.rejected))}")
        box.update("\n".join(lines))

    def action_edit(self) -> None:
        p = self.current()
        if p is None:
            return

        def done(texts: tuple[str, str] | None) -> None:
            if texts is None:
                return
            try:
                prefs.edit_pair(self.store, p.id, chosen=texts[0], rejected=texts[1],
                                pii=self.workspace.settings.make_dataset.pii)
            except UserError as exc:
                self.notify(str(exc), severity="error")
                return
            self.notify(f"pair {p.id} edited")
            self.action_reload()

        self.app.push_screen(EditPair(p), done)

    def action_delete(self) -> None:
        p = self.current()
        if p is None:
            return
        prefs.delete_pairs(self.store, [p.id])
        self.notify(f"pair {p.id} deleted")
        self.action_reload()
