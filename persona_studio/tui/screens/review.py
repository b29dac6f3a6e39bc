"""The Review stage: samples with scores, histogram, blocked-word hits; accept/reject/edit/undo."""

from __future__ import annotations

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Select, Static, TabbedContent, TabPane, TextArea

from persona_studio import review
from persona_studio.errors import UserError
from persona_studio.termsafe import strip_controls
from persona_studio.tui.screens.base import StageScreen

FILTERS = [("all", ""), ("pending", "pending"), ("accepted", "accepted"), ("rejected", "rejected")]


class EditSample(ModalScreen[list | None]):
    """Edit a sample as `role: text` blocks; ctrl+s saves, escape cancels."""

    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, sample: review.Sample):
        super().__init__()
        self.sample = sample

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-dialog"):
            yield Label(f"Edit sample {self.sample.id} — 'user:' / 'assistant:' start a turn; ctrl+s save, esc cancel")
            # Chat text is untrusted: no control sequence reaches the terminal (saving drops them).
            yield TextArea(strip_controls(review.turns_to_text(self.sample.turns)), id="edit-text")
            yield Static("", id="edit-error")

    def action_save(self) -> None:
        try:
            turns = review.text_to_turns(self.query_one(TextArea).text)
        except UserError as exc:
            self.query_one("#edit-error", Static).update(f"[b red]{escape(str(exc))}[/]")
            return
        self.dismiss(turns)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReviewScreen(StageScreen):
    STAGE_TITLE = "Review"
    BINDINGS = [
        Binding("a", "mark('accepted')", "Accept"),
        Binding("x", "mark('rejected')", "Reject"),
        Binding("p", "mark('pending')", "Pending", show=False),
        Binding("e", "edit", "Edit"),
        Binding("u", "undo", "Undo"),
        Binding("r", "reload", "Reload", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="toolbar"):
            yield Select([], prompt="persona", id="review-persona", allow_blank=True)
            yield Select(FILTERS, value="", allow_blank=False, id="review-filter")
            yield Static("", id="review-counts")
        with TabbedContent(id="review-tabs"):
            with TabPane("Samples", id="tab-samples"), Horizontal():
                yield DataTable(id="review-table", cursor_type="row", zebra_stripes=True)
                with VerticalScroll(id="review-detail-box"):
                    yield Static("", id="review-detail", markup=False)
            with TabPane("Scores", id="tab-scores"):
                yield Static("", id="review-hist")
            with TabPane("Blocked words", id="tab-blocked"), Horizontal():
                yield DataTable(id="blocked-words", cursor_type="row")
                with VerticalScroll(id="blocked-hits-box"):
                    yield Static("", id="blocked-hits", markup=False)

    def on_mount(self) -> None:
        self.store = self.workspace.store()
        personas = self.personas()
        sel = self.query_one("#review-persona", Select)
        sel.set_options([(p, p) for p in personas])
        table = self.query_one("#review-table", DataTable)
        table.add_columns("id", "status", "score", "turns", "reply")
        self.query_one("#blocked-words", DataTable).add_columns("word", "hits")
        if personas:
            sel.value = personas[0]
        self.samples: dict[int, review.Sample] = {}

    def on_unmount(self) -> None:
        self.store.close()

    def personas(self) -> list[str]:
        # personas with cards, plus any that only have samples (imported before a card existed)
        ids = set(self.workspace.persona_ids())
        ids |= {r[0] for r in self.store.query("SELECT DISTINCT persona_id FROM samples")}
        return sorted(ids)

    @property
    def persona(self) -> str | None:
        value = self.query_one("#review-persona", Select).value
        return value if isinstance(value, str) else None

    @on(Select.Changed)
    def _changed(self, _event: Select.Changed) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        persona = self.persona
        table = self.query_one("#review-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        self.samples = {}
        if persona is None:
            self.query_one("#review-counts", Static).update("no samples yet: import chats first (key 1)")
            return
        status = self.query_one("#review-filter", Select).value or None
        for s in review.list_samples(self.store, persona, status=status):  # type: ignore[arg-type]
            self.samples[s.id] = s
            score = "-" if s.score is None else f"{s.score:g}"
            table.add_row(str(s.id), s.status + ("*" if s.edited else ""), score, str(len(s.turns)),
                          strip_controls(s.preview),
                          key=str(s.id))
        if self.samples:
            table.move_cursor(row=min(cursor, len(self.samples) - 1))
        c = review.counts(self.store, persona)
        self.query_one("#review-counts", Static).update(
            f" {c['accepted']} accepted · {c['rejected']} rejected · {c['pending']} pending"
        )
        self.show_histogram(persona)
        self.show_blocked(persona)
        self.show_detail()

    def show_histogram(self, persona: str) -> None:
        hist = review.score_histogram(self.store, persona)
        top = max(hist.values()) or 1
        accept = self.workspace.settings.make_dataset.judge.accept_score
        lines = [f"Judge scores (accept_score = {accept})", ""]
        for bucket, n in hist.items():
            mark = "✓" if bucket.isdigit() and int(bucket) >= accept else " "
            lines.append(f"{mark} {bucket:>8} │{'█' * round(40 * n / top):<40}│ {n}")
        self.query_one("#review-hist", Static).update("\n".join(lines))

    def show_blocked(self, persona: str) -> None:
        table = self.query_one("#blocked-words", DataTable)
        table.clear()
        for word, n in review.blocked_summary(self.store, persona):
            table.add_row(word, str(n), key=word)
        self.show_hits()

    def show_hits(self, word: str | None = None) -> None:
        persona = self.persona
        if persona is None:
            return
        hits = review.blocked_hits(self.store, persona, word, limit=50)
        text = "\n".join(f"[{h['word']}] {h['text']}" for h in hits) or "no blocked-word hits in the last run"
        self.query_one("#blocked-hits", Static).update(strip_controls(text))

    @on(DataTable.RowHighlighted, "#blocked-words")
    def _word(self, event: DataTable.RowHighlighted) -> None:
        self.show_hits(event.row_key.value)

    @on(DataTable.RowHighlighted, "#review-table")
    def _row(self, _event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def current(self) -> review.Sample | None:
        table = self.query_one("#review-table", DataTable)
        if not self.samples or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.samples.get(int(key)) if key else None

    def show_detail(self) -> None:
        s = self.current()
        box = self.query_one("#review-detail", Static)
        if s is None:
            box.update("")
            return
        head = f"#{s.id} {s.status}" + (f" · score {s.score:g} {s.reason}" if s.score is not None else "")
        body = "\n\n".join(f"{t['role']}: {t['content']}" for t in s.turns)
        box.update(strip_controls(f"{head}\n{'─' * 30}\n{body}"))  # chat text may hold escape sequences

    def action_mark(self, status: str) -> None:
        s = self.current()
        if s is None:
            return
        try:
            review.set_status(self.store, [s.id], status, persona=self.persona)
        except UserError as exc:
            self.gone(exc)
            return
        self.action_reload()
        table = self.query_one("#review-table", DataTable)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)  # keep going through the queue

    def action_edit(self) -> None:
        s = self.current()
        if s is None:
            return

        def done(turns: list | None) -> None:
            if turns is None:
                return
            try:
                review.edit_sample(self.store, s.id, turns, self.workspace.settings.make_dataset.pii,
                                   persona=self.persona)
            except UserError as exc:
                self.gone(exc)
                return
            self.notify(f"sample {s.id} edited (u to undo)")
            self.action_reload()

        self.app.push_screen(EditSample(s), done)

    def gone(self, exc: UserError) -> None:
        """The sample on screen changed under us (make-dataset re-run in another terminal, say):
        say so and show what is there now."""
        self.notify(f"{exc}; the list is reloaded (make-dataset may have re-made the samples)",
                    severity="warning", timeout=8)
        self.action_reload()

    def action_undo(self) -> None:
        if self.persona is None:
            return
        done = review.undo(self.store, self.persona, self.workspace.settings.make_dataset.pii)
        self.notify(f"undid {done['action']} of sample {done['sample_id']}" if done else "nothing to undo")
        self.action_reload()
