"""make-dataset: a persona's stored messages -> samples, in one store transaction.

Per message, in stream order: non-text kinds (everything but text and quote-replies, whose
text is the reply) are skipped or cut the conversation; blocked
words remove the message (each hit recorded in blocked_hits); PII is redacted, or the message
dropped, per kind; what is left is sessionized into conversations and samples (see
sessionize.py). Each sample gets the persona card's system prompt, is deduplicated by hash
and counted in tokens. Conversations end with their import.

Two paths give the same result: chat exports go through clean/columnar.py (Arrow and numpy
over windows of messages, the one that handles millions; its samples are hashed and stored on a
writer thread while the next window is computed), generic datasets — which carry their own
roles and sample boundaries — through the message-by-message loop here. A test holds them equal.

Re-runnable: samples are upserted by (persona_id, hash). A sample generated again keeps its
row — status, review edits, scores. Import samples no longer generated are deleted. One
`dataset_runs` row per run holds the settings and the summary; blocked_hits keep the latest
run only (the Review screen shows those).

Judge disabled => samples stay 'pending'. Training uses pending samples while nothing of the
persona was ever scored, and accepted ones otherwise; rejected never.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import numpy as np

from persona_studio.bulk import Background, paused_gc
from persona_studio.clean.blocked import BlockedWords, load_words
from persona_studio.clean.checks import TextChecks
from persona_studio.clean.dedup import Dedup, dumps, sample_hashes
from persona_studio.clean.pii import Redactor
from persona_studio.clean.sessionize import Rules, Sessionizer
from persona_studio.clean.tokens import TokenCounter, report
from persona_studio.importer import check_persona
from persona_studio.ingest.generic import NAMES as GENERIC_FORMATS

if TYPE_CHECKING:
    from persona_studio.clean.columnar import Closed

Progress = Callable[[int, int | None], None]

_BATCH = 2000  # the message path's samples are stored this many at a time
# Samples are stored by one statement per batch. The rows: a JSON array of [hash, turns_start, turns_bytes, n_turns, n_tokens,
# meta] arrays (?5), and every sample's turns JSON back to back in one UTF-8 blob (?6) that each
# row cuts its own out of (substr on a blob counts bytes, so no JSON escaping of the turns at
# all). created_at is passed once (the column default, strftime per row, costs ~1 µs a
# sample). WHERE true: an upsert on INSERT ... SELECT needs it, to parse.
_INSERT_ROWS = (
    "INSERT INTO samples (persona_id, run_id, hash, system, turns, n_turns, n_tokens, source, status, meta,"
    " created_at) SELECT ?1, ?2, value->>0, ?3, CAST(substr(?6, value->>1, value->>2) AS TEXT), value->>3,"
    " value->>4, 'import', 'pending', value->>5, ?4 FROM json_each(CAST(?5 AS TEXT)) WHERE true"
    " ON CONFLICT(persona_id, hash) DO UPDATE SET run_id = excluded.run_id"
)

def system_prompt(ws: Any, persona_id: str) -> str:
    """The system prompt of every sample: the card's `system_prompt` with {{char}} filled in,
    else the same default the chat uses, so training and chat open the same way."""
    from persona_studio.chat.prompt import macros
    from persona_studio.persona.card import load_persona

    p = load_persona(ws, persona_id)
    name = p.name or persona_id
    return macros(p.system_prompt.strip(), name, "User") or f"You are {name}. Stay in character as {name}."


class _Run:
    """State of one make-dataset pass over the messages (kept out of locals for clarity)."""

    def __init__(self, ws: Any, persona_id: str, system: str, existing: set[str], run_id: int, db: Any):
        md = ws.settings.make_dataset
        self.persona_id, self.system, self.existing, self.run_id, self.db = (
            persona_id, system, existing, run_id, db
        )
        self.cut_non_text = md.non_text == "cut"
        self.checks = TextChecks(BlockedWords(load_words(md.blocked_words, md.blocked_words_file, ws.root)),
                                 Redactor(md.pii))
        self.sess = Sessionizer(Rules.from_settings(md))
        self.dedup = Dedup(md.dedup)
        self.tokens = TokenCounter(ws.settings.model.name_or_path, ws.settings.model.trust_remote_code)
        self.created_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        self.skipped = self.checks.skipped
        self.samples: Counter[str] = Counter()
        self.lengths: list[int] = []
        # The message path's closed conversations not stored yet: (chat, [(turns JSON, turn
        # contents)], blocked-word hits), and how many samples they hold.
        self.pending: list[tuple[str, list[tuple[str, list[str]]], list[Any]]] = []
        self.n_pending = 0
        self.open_hits: dict[tuple[Hashable, int], list[tuple[str, tuple[int, int], str]]] = {}
        self.hits: list[tuple[str, tuple[int, int], str, str | None]] = []
        self.writer = Background()

    def feed(self, rows: Any, progress: Progress | None, total: int, done: int = 0) -> int:
        # The loop runs once per message: what it touches is a local.
        sess, check, skipped = self.sess, self.checks.check, self.skipped
        sess_add, done = sess.add, sess.done  # `drain` empties `done` in place
        cut_non_text = self.cut_non_text
        name = self.checks.name  # speaker names are data too: redacted as the column path does
        conv_of: dict[int, Hashable] = {}
        n = 0
        for ref, import_id, ts, chat, speaker, is_me, kind, text, role, conv in rows:
            n += 1
            if progress is not None and not n & 0x3FFF:
                progress(done + n, total)
            key: Hashable = (import_id, chat)
            if role is not None:  # only generic datasets carry roles
                # A generic dataset: the source's sample boundaries, not time windows; its
                # "speakers" are role names, not people, so no `name` on its turns.
                key = (import_id, "conv", conv)
                speaker = ""
                prev = conv_of.get(import_id)
                if prev is not None and prev != key:
                    sess.cut(prev)
                conv_of[import_id] = key
                if role == "system":
                    skipped["source_system_prompt"] += 1
                    continue
            if kind != "text" and kind != "quote":  # a quote-reply's text is the reply itself
                skipped[f"non_text:{kind}"] += 1
                if cut_non_text:
                    sess.cut(key)
                continue
            text = text.strip()
            if not text:
                skipped["empty"] += 1
                continue
            clean, words = check(text)
            if clean is None:  # removed, but part of the talk: the gap rule still sees it
                serial = sess.touch(key, ts)
                if words:
                    kept = self.checks.hit_text(text)  # the hit keeps the text less its personal data
                    self.open_hits.setdefault((key, serial), []).extend((w, ref, kept) for w in words)
                continue
            sess_add(key, ts, name(speaker) if speaker else speaker, is_me, clean)
            if done:
                self.drain()
        sess.close_all()
        self.drain()
        self.flush()
        for hits in self.open_hits.values():  # conversations that produced no turns at all
            self.hits.extend((w, ref, t, None) for w, ref, t in hits)
        self.open_hits.clear()
        if progress is not None:
            progress(done + n, total)
        return n

    def drain(self) -> None:
        for key, serial, samples in self.sess.done:
            chat = key[1] if isinstance(key, tuple) and len(key) == 2 else ""
            encoded = [(dumps(turns), [t["content"] for t in turns]) for turns in samples]
            self.pending.append((chat, encoded, self.open_hits.pop((key, serial), None) or []))
            self.n_pending += len(encoded)
        self.sess.done.clear()
        if self.n_pending >= _BATCH:
            self.flush()

    def flush(self) -> None:
        """The message path's pending conversations, as a `Closed` for `accept_closed`: both
        paths dedup and store samples the same way."""
        import pyarrow as pa

        from persona_studio.clean.columnar import Closed

        convs, self.pending, self.n_pending = self.pending, [], 0
        names: dict[str, int] = {}
        jsons: list[str] = []
        contents: list[list[str]] = []
        chats: list[int] = []
        hits: list[tuple[int, list[Any]]] = []
        for chat, samples, conv_hits in convs:
            if conv_hits:
                hits.append((len(jsons) if samples else -1, conv_hits))
            code = names.setdefault(chat, len(names))
            for encoded, turn_contents in samples:
                jsons.append(encoded)
                contents.append(turn_contents)
                chats.append(code)
        if not jsons and not hits:
            return
        tokens = self.tokens.count([(self.system, c) for c in contents])
        self.accept_closed(Closed(
            pa.array(jsons, pa.string()), np.array(chats, dtype=np.int64), list(names),
            np.array([len(c) for c in contents], dtype=np.int64), np.array(tokens, dtype=np.int64), hits,
        ))

    def accept_closed(self, c: Closed) -> None:
        """Closed conversations (see `Closed`), of either path: hash, dedup and store their samples.
        Per sample this is a hash and a dict lookup; the rows go to SQLite in one statement
        (`_INSERT_ROWS`), so its insert loop runs in C with the GIL released (executemany
        takes the GIL back for every row, which the main thread's work then delays)."""
        import pyarrow as pa

        hashes = sample_hashes(self.system, c.jsons.cast(pa.binary()).to_pylist())
        stored = list(map(self.dedup.check, hashes))
        for at, hits in c.hits:
            first = (stored[at] or hashes[at]) if at >= 0 else None  # a duplicate's hits point at its twin
            self.hits.extend((w, ref, t, first) for w, ref, t in hits)
        jsons, n_turns, tokens, chats = c.jsons, c.n_turns, c.tokens, c.chats
        if None in stored:  # duplicates dropped (the usual case has none)
            keep = np.fromiter((h is not None for h in stored), dtype=bool, count=len(stored))
            self.samples["duplicates_dropped"] += len(stored) - int(keep.sum())
            stored = [h for h in stored if h is not None]
            jsons, n_turns, tokens, chats = jsons.filter(keep), n_turns[keep], tokens[keep], chats[keep]
        if not stored:
            return
        new = len(stored) - sum(map(self.existing.__contains__, stored))
        self.samples["new"] += new
        self.samples["kept"] += len(stored) - new
        self.lengths.extend(tokens.tolist())
        metas = [dumps({"chat": self.checks.name(ch)}) if ch else "{}" for ch in c.chat_names]
        rows, turns = sample_rows(stored, jsons, n_turns, tokens, metas, chats)
        self.db.execute(_INSERT_ROWS, (self.persona_id, self.run_id, self.system, self.created_at, rows, turns))

    def feed_import(self, db: Any, import_id: int, columnar: bool, progress: Progress | None,
                    done: int, total: int) -> int:
        """Clean one import's messages; returns how many were read. Conversations end with
        their import. Chat exports take the column path; generic datasets (their own sample
        boundaries and roles, rarely big) the message-by-message one."""
        from persona_studio.store.blocks import read_blocks

        if not columnar:
            self.writer.wait()  # the column path's samples of earlier imports go first
            return self.feed(_messages(db, import_id), progress, total, done)
        from persona_studio.clean.columnar import ColumnarSessionizer

        # Storing a window's samples (hashes, SQLite) runs on the writer thread while the next
        # window is computed; accept_closed is the only code that touches dedup/counters then.
        cs = ColumnarSessionizer(self.sess, self.checks, self.cut_non_text, self.tokens, self.system,
                                 lambda closed: self.writer.submit(self.accept_closed, closed))
        n = done
        for b in read_blocks(db, import_id):
            cs.feed(b, import_id)
            n += len(b)
            if progress is not None:
                progress(n, total)
        cs.finish(import_id)
        return n - done


def sample_rows(hashes: list[str], jsons: Any, n_turns: Any, tokens: Any, metas: list[str],
                meta_of: Any) -> tuple[Any, Any]:
    """The parameters ?5 and ?6 of `_INSERT_ROWS`, built by Arrow kernels and numpy (no Python
    per row): the rows as UTF-8 JSON, and the turns' UTF-8 bytes (the Arrow string buffer
    itself). Both are Arrow buffers, which SQLite binds as blobs without a Python copy."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from persona_studio.clean.dedup import encode_string

    jsons = jsons.combine_chunks() if isinstance(jsons, pa.ChunkedArray) else jsons
    bufs = jsons.buffers()
    ends = np.frombuffer(bufs[1], dtype=np.int32)[jsons.offset:jsons.offset + len(jsons) + 1].astype(np.int64)
    lo, hi = int(ends[0]), int(ends[-1])
    numbers = [pa.array(x).cast(pa.string()) for x in (ends[:-1] - lo + 1, np.diff(ends), n_turns, tokens)]
    meta = pa.array([encode_string(m) for m in metas], pa.string()).take(pa.array(meta_of))
    row = pc.binary_join_element_wise(
        '["', pa.array(hashes, pa.string()), '",', numbers[0], ",", numbers[1], ",", numbers[2], ",",
        numbers[3], ",", meta, "]", "")
    whole = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(row)], pa.int32()), row), ",")
    rows = pc.binary_join_element_wise("[", whole, "]", "").cast(pa.binary())[0].as_buffer()
    return rows, bufs[2].slice(lo, hi - lo)


def _messages(db: Any, import_id: int) -> Any:
    """One import's stored messages in order, as (ref, import_id, ts, chat, speaker, is_me,
    kind, text, role, conv) tuples; `ref` is (import_id, seq), how a blocked-word hit names its message."""
    from itertools import count, repeat

    from persona_studio.store.blocks import read_blocks

    for b in read_blocks(db, import_id):
        n = len(b)
        roles = b.meta.get("role") or repeat(None, n)
        convs = b.meta.get("conv") or repeat(None, n)
        ts = [None if t != t else t for t in b.ts.tolist()]  # NaN: no time
        refs = zip(repeat(import_id, n), count(b.first_seq), strict=False)  # count is endless
        yield from zip(refs, repeat(import_id, n), ts, b.chat, b.speaker, b.is_me, b.kind, b.text,
                       roles, convs, strict=True)


def make_dataset(ws: Any, persona_id: str, progress: Progress | None = None, force: bool = False) -> dict[str, Any]:
    """Rebuild `persona_id`'s samples from its stored messages; return the run summary.
    Review work on samples no longer made is carried over to the new ones (clean/carry.py);
    what cannot be carried makes the run refuse, unless `force`."""
    check_persona(ws, persona_id)
    system = system_prompt(ws, persona_id)
    md = ws.settings.make_dataset
    started = time.monotonic()
    store = ws.store()
    # Bulk work: a 64 MiB page cache keeps the samples' B-trees in memory (default is 2 MiB).
    store.conn.execute("PRAGMA cache_size = -65536")
    try:
        with paused_gc(), store.tx() as db:
            total = db.execute(
                "SELECT coalesce(sum(n), 0) FROM message_blocks"
                " WHERE import_id IN (SELECT id FROM imports WHERE persona_id = ?)",
                (persona_id,),
            ).fetchone()[0]
            first_new_id = db.execute("SELECT coalesce(max(id), 0) + 1 FROM samples").fetchone()[0]
            run_id = db.execute(
                "INSERT INTO dataset_runs (persona_id, settings) VALUES (?, ?)",
                (persona_id, json.dumps(dataclasses.asdict(md), ensure_ascii=False)),
            ).lastrowid
            existing = {
                r[0] for r in db.execute(
                    "SELECT hash FROM samples WHERE persona_id = ? AND source = 'import'", (persona_id,)
                )
            }
            run = _Run(ws, persona_id, system, existing, run_id, db)
            read = 0
            try:
                for import_id, fmt in db.execute(
                    "SELECT id, format FROM imports WHERE persona_id = ? ORDER BY id", (persona_id,)
                ).fetchall():
                    read += run.feed_import(db, import_id, fmt not in GENERIC_FORMATS, progress, read, total)
                run.writer.wait()
            finally:
                run.writer.close()  # before the transaction ends, whichever way it ends
            if progress is not None:
                progress(read, total)
            from persona_studio.clean.carry import CarryReport, carry_review

            # Before stale samples go: their review work moves to the re-made ones (or we refuse).
            carried = carry_review(db, persona_id, run_id, first_new_id, force, md.pii) if existing else CarryReport()
            removed = db.execute(  # nothing can be stale on a persona's first run: skip the scan
                "DELETE FROM samples WHERE persona_id = ? AND source = 'import' AND (run_id IS NULL OR run_id != ?)",
                (persona_id, run_id),
            ).rowcount if existing else 0
            db.execute("DELETE FROM blocked_hits WHERE persona_id = ?", (persona_id,))
            db.executemany(
                "INSERT INTO blocked_hits (persona_id, run_id, word, import_id, seq, text, sample_hash)"
                " VALUES (?,?,?,?,?,?,?)",
                [(persona_id, run_id, w, *ref, t, h) for w, ref, t, h in run.hits],
            )
            kept_samples = run.samples["new"] + run.samples["kept"]
            summary: dict[str, Any] = {
                "persona": persona_id,
                "run_id": run_id,
                "messages": {
                    "read": read,
                    "skipped": dict(sorted(run.skipped.items())),
                    "kept": read - sum(run.skipped.values()),
                },
                "redacted": dict(sorted(run.checks.redacted.items())),
                "pii_dropped": dict(sorted(run.checks.pii_dropped.items())),
                "blocked": {"messages": run.skipped["blocked_word"], "hits": len(run.hits),
                            "words": dict(run.checks.word_hits.most_common())},
                "sessionize": dict(sorted(run.sess.counts.items())),
                "samples": {
                    "total": kept_samples,
                    "new": run.samples["new"],
                    "kept_with_review_state": run.samples["kept"],
                    "removed_stale": removed,
                    "duplicates_dropped": run.samples["duplicates_dropped"],
                },
                "review": carried.to_dict(),
                "tokens": report(run.lengths, run.tokens.label, run.tokens.exact,
                                 ws.settings.train_sft_args.cutoff_len),
                "seconds": round(time.monotonic() - started, 2),
            }
            db.execute(
                "UPDATE dataset_runs SET summary = ? WHERE id = ?",
                (json.dumps(summary, ensure_ascii=False), run_id),
            )
    finally:
        store.close()
    if md.judge.enable:
        from persona_studio.clean.judge import score_persona

        summary["judge"] = score_persona(ws, persona_id)
    return summary
