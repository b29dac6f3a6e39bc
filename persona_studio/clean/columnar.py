"""make-dataset for chat exports, a window of messages at a time, on Arrow columns: numpy for
the structure (where conversations and turns start), Arrow compute kernels for the text
(trim, the regex pre-checks, joining turns, JSON). Same result as `Sessionizer` fed message by
message (a test feeds both the same random chats); Python runs per message only for the few
that hold a blocked word or might hold PII; per sample only to hash it and look the hash up
for dedup, on the writer thread (clean/pipeline.py).

Why the rules vectorise: every place where `Sessionizer` starts a new conversation depends
only on the message and the one before it in the same chat (see `_breaks`), never on state
further back, so all of them are found with array comparisons. Turns are runs of one role
inside a conversation; only conversations that need splitting (too many turns, a turn too
short or long) go through `Sessionizer._samples` one by one.

Events, per chat, in message order: ADD (a text message that joins the talk), TOUCH (a
message removed by a blocked word or PII 'drop': it still counts for the gap rule) and CUT
(a non-text message when `non_text` is "cut"). Conversations still open at the end of a
window are carried, as their events, into the next one, so memory stays one window deep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring  # type: ignore[attr-defined]  # the C encoder
from typing import TYPE_CHECKING, Any

import numpy as np

from persona_studio.clean.sessionize import Sessionizer
from persona_studio.store.blocks import codes

if TYPE_CHECKING:
    import pyarrow as pa

    from persona_studio.clean.checks import TextChecks
    from persona_studio.clean.tokens import TokenCounter
    from persona_studio.store.blocks import Block

ADD, TOUCH, CUT = 0, 1, 2
_TEXT_KINDS = frozenset({"text", "quote"})
WINDOW = 1 << 17  # messages per window (~15 MB of text); small enough that storing one overlaps the next
Hit = tuple[str, tuple[int, int], str]  # (word, (import_id, seq), text)
_JSON_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"),
                 ("\b", "\\b"), ("\f", "\\f"))
_JSON_RARE = r"[\x00-\x07\x0b\x0e-\x1f]"  # control characters written as \u00XX


@dataclass
class Closed:
    """Conversations closed in one window, in the order Sessionizer closes them, and their
    samples in that order. `hits` pairs each conversation that had blocked-word hits with the
    index of its first sample (-1: it has none)."""

    jsons: pa.Array  # turns JSON of each sample, as dedup.dumps writes it
    chats: np.ndarray  # chat of each sample, an index into `chat_names`
    chat_names: list[str]
    n_turns: np.ndarray
    tokens: np.ndarray  # as TokenCounter.count gives them (system prompt included)
    hits: list[tuple[int, list[Hit]]]


Emit = Callable[[Closed], None]


class _Events:
    """Column chunks of events (ADD/TOUCH/CUT) in stream order."""

    def __init__(self) -> None:
        self.cols: list[tuple[np.ndarray, ...]] = []  # (pos, key, ts, etype, me, spk)
        self.text: list[pa.Array] = []
        self.n = 0

    def add(self, cols: tuple[np.ndarray, ...], text: pa.Array) -> None:
        if len(text):
            self.cols.append(cols)
            self.text.append(text)
            self.n += len(text)

    def __len__(self) -> int:
        return self.n


class ColumnarSessionizer:
    """Feeds Blocks of one import; hands finished conversations to `emit` a window at a
    time, in the order `Sessionizer` would close them."""

    def __init__(self, sess: Sessionizer, checks: TextChecks, cut_non_text: bool, tokens: TokenCounter,
                 system: str, emit: Emit):
        self.sess, self.rules = sess, sess.rules
        self.checks, self.cut_non_text, self.skipped = checks, cut_non_text, checks.skipped
        self.tokens, self.system = tokens, system
        self.emit = emit
        self.keys: dict[str, int] = {}
        self.chats: list[str] = []
        self.spk_ids: dict[str, int] = {}
        self.speakers: list[str] = []
        self.hits: dict[int, list[Hit]] = {}  # by stream position of the removed message
        self.pending = _Events()
        self.blocks: list[Block] = []  # fed, not yet turned into events
        self.buffered = 0
        self.orphans: list[tuple[float, list[Hit]]] = []
        self.n = 0  # messages seen (stream position)
        # The RE2 pre-check: None when nothing is checked, "" when only the exact checks will do.
        parts = []
        if checks.blocked.search is not None:
            parts.append(checks.blocked.prefilter())
        if checks.redactor.maybe is not None:
            parts.append(checks.redactor.re2_pattern)
        self._pattern = None if not parts else "" if None in parts else "|".join(f"(?:{p})" for p in parts)

    def feed(self, block: Block, import_id: int) -> None:
        self.blocks.append(block)
        self.buffered += len(block)
        # A window also waits for as many new messages as are carried: one endless conversation
        # (a busy group chat) would otherwise be re-scanned whole for every block.
        if self.buffered + len(self.pending) >= WINDOW and self.buffered >= len(self.pending):
            self._events(import_id)
            self._window(final=False)

    def finish(self, import_id: int) -> None:
        self._events(import_id)
        self._window(final=True)

    # -- per window of blocks: classify messages into events -----------------------------------

    def _events(self, import_id: int) -> None:
        """The buffered blocks as events. The text work runs once over all of them: each Arrow
        regex call compiles its pattern, which costs as much as scanning a block."""
        import pyarrow as pa
        import pyarrow.compute as pc

        blocks, self.blocks, self.buffered = self.blocks, [], 0
        if not blocks:
            return
        batches = [b.batch for b in blocks]
        n = sum(b.num_rows for b in batches)
        base, self.n = self.n, self.n + n
        seq = np.concatenate([np.arange(b.first_seq, b.first_seq + len(b)) for b in blocks])
        skipped = self.skipped
        keep = np.ones(n, dtype=bool)
        etype = np.full(n, ADD, dtype=np.int8)
        names: list[str] = []
        ids: dict[str, int] = {}
        kind = np.concatenate([_global(*codes(b.column("kind")), ids, names) for b in batches])
        other = ~np.array([k in _TEXT_KINDS for k in names], dtype=bool)[kind] if names else ~keep
        if other.any():  # a quote-reply's text is the reply
            for k, c in zip(names, np.bincount(kind[other], minlength=len(names)).tolist(), strict=True):
                if c:
                    skipped[f"non_text:{k}"] += c
            if self.cut_non_text:
                etype[other] = CUT
            else:
                keep[other] = False
        text = pa.concat_arrays([b.column("text") for b in batches]) if len(batches) > 1 else batches[0].column("text")
        text = pc.utf8_trim_whitespace(text)  # str.strip (a test checks every code point)
        empty = (pc.utf8_length(text).to_numpy(zero_copy_only=False) == 0) & (etype == ADD) & keep
        if empty.any():
            skipped["empty"] += int(empty.sum())
            keep &= ~empty
        live = keep & (etype == ADD)
        # One pre-check pass for both (each Arrow regex call costs ~100 ns a text), then the
        # message path's own checks on the few flagged texts.
        check = self.checks.check
        at, clean_texts = [], []
        for i, t in self._flagged(text, live):
            clean, words = check(t)
            if clean is None:  # removed, but part of the talk: the gap rule still sees it
                etype[i] = TOUCH
                if words:
                    ref = (import_id, int(seq[i]))
                    kept = self.checks.hit_text(t)  # the hit keeps the text less its personal data
                    self.hits[base + i] = [(w, ref, kept) for w in words]
            elif clean != t:
                at.append(i)
                clean_texts.append(clean)
        if at:
            mask = np.zeros(n, dtype=bool)
            mask[at] = True
            text = pc.replace_with_mask(text, pa.array(mask), pa.array(clean_texts, pa.string()))
        idx = np.flatnonzero(keep)
        cols = (
            idx + base,
            np.concatenate([_global(*codes(b.column("chat")), self.keys, self.chats) for b in batches])[idx],
            np.concatenate([b.column("ts").to_numpy(zero_copy_only=False) for b in batches])[idx],
            etype[idx],
            np.concatenate([b.column("is_me").to_numpy(zero_copy_only=False) for b in batches])[idx].astype(bool),
            np.concatenate([self._speakers(b.column("speaker")) for b in batches])[idx],
        )
        self.pending.add(cols, text if len(idx) == n else text.take(pa.array(idx)))

    def _speakers(self, column: pa.Array) -> np.ndarray:
        """Run-wide speaker codes, by name as it may appear in samples (TextChecks.name: a
        contact saved as a phone number is "<PHONE>"), as the message path groups them."""
        local, values = codes(column)
        return _global(local, [self.checks.name(v) for v in values], self.spk_ids, self.speakers)

    def _flagged(self, text: pa.Array, live: np.ndarray) -> list[tuple[int, str]]:
        """(index, text) of the live texts that may hold a blocked word or PII: a superset of
        what the exact Python checks find, by one RE2 pre-check (Arrow's regex). Where RE2
        refuses the pattern (a huge word list), the exact batch checks run over the column."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self._pattern is None or not live.any():
            return []
        if self._pattern:
            try:
                hit = pc.match_substring_regex(text, self._pattern)
                at = np.flatnonzero(hit.to_numpy(zero_copy_only=False) & live)
                return list(zip(at.tolist(), text.take(pa.array(at)).to_pylist(), strict=True))
            except pa.ArrowInvalid:
                self._pattern = ""  # don't try again for every window
        texts = text.to_pylist()
        found = set()
        if self.checks.blocked.search is not None:
            found.update(self.checks.blocked.find_many(texts))
        if self.checks.redactor.maybe is not None:
            found.update(self.checks.redactor.candidates(texts))
        return [(i, texts[i]) for i in sorted(found) if live[i]]

    # -- per window: conversations and turns ---------------------------------------------------

    def _window(self, final: bool) -> None:
        import pyarrow as pa

        ev = self.pending
        self.pending = _Events()
        closed: Closed | None = None
        if len(ev):
            pos, key, ts, etype, me, spk = (np.concatenate(c) for c in zip(*ev.cols, strict=True))
            text = pa.concat_arrays(ev.text) if len(ev.text) > 1 else ev.text[0]
            order = np.argsort(key, kind="stable")  # per chat, in stream order
            k, t, e, r = key[order], ts[order], etype[order], me[order]
            start, cut_gap = self._breaks(k, t, e, r)
            _add(self.sess.counts, "cut_same_role_gap", int(cut_gap.sum()))
            conv = np.cumsum(start) - 1  # conversation number per event (sorted order)
            # The last conversation of each chat is still open unless a CUT ended it.
            last_of_key = np.ones(len(k), dtype=bool)
            last_of_key[:-1] = k[1:] != k[:-1]
            open_conv = np.zeros(int(conv[-1]) + 1, dtype=bool)
            open_conv[conv[last_of_key & (e != CUT)]] = True
            if final:
                open_conv[:] = False
            else:
                carry = np.sort(order[open_conv[conv] & (e != CUT)])
                self.pending.add(tuple(c[carry] for c in (pos, key, ts, etype, me, spk)), text.take(pa.array(carry)))
            closed = self._convs(text, spk[order], order, pos, conv, e, r, k, open_conv)
        if closed is not None:
            self.emit(closed)
        if final and self.orphans:
            self.orphans.sort(key=lambda o: o[0])
            none = np.zeros(0, dtype=np.int64)
            self.emit(Closed(pa.array([], pa.string()), none, self.chats, none, none,
                             [(-1, hits) for _, hits in self.orphans]))
            self.orphans.clear()

    def _breaks(self, k: np.ndarray, t: np.ndarray, e: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where a new conversation starts (sorted order), and which of those are same-role cuts.

        - the first event of a chat, and the event after a CUT, always start one;
        - a gap over `qa_s` since the chat's previous event starts one, provided the current
          conversation already has a message (Sessionizer reuses a conversation that only
          saw removed messages) — i.e. an ADD since the previous such candidate;
        - an ADD of the same role as the previous ADD, later than `combine_s` after it, starts
          one when nothing between them did.
        CUT events get start=True too: they end a conversation and belong to none.
        A missing time (NaN) never breaks, as in Sessionizer; chat exports always carry times
        (a row without one is counted bad on import), which is why only they come here."""
        m = len(k)
        first = np.ones(m, dtype=bool)
        first[1:] = k[1:] != k[:-1]
        after_cut = np.zeros(m, dtype=bool)
        after_cut[1:] = (e[:-1] == CUT) & ~first[1:]
        gap = np.full(m, np.inf)
        gap[1:] = t[1:] - t[:-1]
        cand = ~first & ~after_cut & (gap > self.rules.qa_s) & (e != CUT)
        hard = first | after_cut | (e == CUT)
        # realness of a gap candidate: an ADD since the previous candidate (hard or gap)
        is_add = (e == ADD).astype(np.int64)
        adds_before = np.cumsum(is_add) - is_add  # ADDs strictly before each event
        any_cand = hard | cand
        cand_idx = np.flatnonzero(any_cand)
        prev_cand = np.zeros(m, dtype=np.int64)
        # index of the previous candidate for every candidate
        prev_of = np.empty(len(cand_idx), dtype=np.int64)
        prev_of[0] = cand_idx[0]
        prev_of[1:] = cand_idx[:-1]
        prev_cand[cand_idx] = prev_of
        real_gap = cand & (adds_before - adds_before[prev_cand] > 0)
        # same-role cut: previous ADD of the chat, with no candidate in between
        add_idx = np.flatnonzero(e == ADD)
        cut_gap = np.zeros(m, dtype=bool)
        if len(add_idx) > 1:
            a, p = add_idx[1:], add_idx[:-1]
            cands_upto = np.cumsum(any_cand)
            same_conv = (k[a] == k[p]) & (cands_upto[a] - cands_upto[p] == 0)
            same_role = r[a] == r[p]
            late = (t[a] - t[p]) > self.rules.combine_s
            cut_gap[a[same_conv & same_role & late]] = True
        return hard | real_gap | cut_gap, cut_gap

    def _convs(self, text: pa.Array, spk: np.ndarray, order: np.ndarray, pos: np.ndarray, conv: np.ndarray,
               e: np.ndarray, r: np.ndarray, k: np.ndarray, open_conv: np.ndarray) -> Closed | None:
        """Turns and samples of every closed conversation, in the order Sessionizer closes
        them (`spk` is in sorted order, `text` in stream order)."""
        closed = ~open_conv
        if not closed.any():
            return None
        starts = np.flatnonzero(np.r_[True, conv[1:] != conv[:-1]])  # first event of each conv
        first_pos = pos[order[starts]].astype(np.float64)
        chat_of = k[starts]
        # A conversation closes where the next one of its chat starts (a break, or a CUT whose
        # pseudo-conversation comes next); the last one of a chat closes at the end, in the
        # order the conversations were opened (Sessionizer.close_all walks a dict).
        close_at = np.full(len(open_conv), np.inf)
        same = np.flatnonzero(chat_of[1:] == chat_of[:-1])
        close_at[same] = first_pos[same + 1]
        hits_of: dict[int, list[Hit]] = {}
        touch = np.flatnonzero((e == TOUCH) & closed[conv])
        for j, p in zip(conv[touch].tolist(), pos[order[touch]].tolist(), strict=True):
            if (h := self.hits.pop(p, None)) is not None:
                hits_of.setdefault(j, []).extend(h)
        adds = np.flatnonzero((e == ADD) & closed[conv])
        turns = self._turns(text, spk[adds], order[adds], conv[adds], r[adds])
        return self._samples(np.flatnonzero(closed), *turns, close_at, first_pos, chat_of, hits_of)

    def _turns(self, text: pa.Array, spk: np.ndarray, src: np.ndarray, ac: np.ndarray,
               ar: np.ndarray) -> tuple[np.ndarray, np.ndarray, pa.Array, pa.Array, np.ndarray]:
        """The turns of the ADDs (grouped by conversation, in order): conversation and role
        of each, its content, its JSON object as dedup.dumps writes it, and its `name` (0: none,
        else 1 + the speaker's code)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        m = len(ac)
        new_turn = np.ones(m, dtype=bool)
        new_turn[1:] = (ac[1:] != ac[:-1]) | (ar[1:] != ar[:-1])
        t_first = np.flatnonzero(new_turn)
        t_conv, t_me = ac[t_first], ar[t_first]
        turn_of = np.cumsum(new_turn) - 1
        # A user turn of several speakers (group chat) prefixes every line with its speaker.
        other = np.zeros(m, dtype=bool)
        other[1:] = (spk[1:] != spk[:-1]) & ~new_turn[1:]
        multi = np.zeros(len(t_first), dtype=bool)
        multi[turn_of[other]] = True
        multi &= ~t_me
        # Contents, and the same JSON-escaped: lines are escaped before they are joined, as few
        # single messages need it while most multi-message turns would (the separator).
        offsets = pa.array(np.r_[t_first, m].astype(np.int32))
        sep = self.rules.separator
        lines = text.take(pa.array(src))
        escaped = _json_body(lines)
        prefixed = multi[turn_of]
        if prefixed.any():
            mask, who = pa.array(prefixed), pa.array(spk[prefixed])
            names = pa.array(self.speakers, pa.string())
            esc_names = pa.array([encode_basestring(n)[1:-1] for n in self.speakers], pa.string())
            lines = pc.replace_with_mask(lines, mask, pc.binary_join_element_wise(
                names.take(who), lines.filter(mask), ": "))
            escaped = pc.replace_with_mask(escaped, mask, pc.binary_join_element_wise(
                esc_names.take(who), escaped.filter(mask), ": "))
        contents = pc.binary_join(pa.ListArray.from_arrays(offsets, lines), sep)
        body = pc.binary_join(pa.ListArray.from_arrays(offsets, escaped), encode_basestring(sep)[1:-1])
        # role prefix and the closing part ("name" for a one-speaker user turn with a name)
        first_spk = spk[t_first]
        tail = ['"}'] + [f'", "name": {encode_basestring(s)}}}' if s else '"}' for s in self.speakers]
        tail_of = np.where(t_me | multi, 0, first_spk + 1)
        head = pa.array(['{"role": "user", "content": "', '{"role": "assistant", "content": "']).take(
            pa.array(t_me.astype(np.int8)))
        frag = pc.binary_join_element_wise(head, body, pa.array(tail, pa.string()).take(pa.array(tail_of)), "")
        return t_conv, t_me, contents, frag, tail_of

    def _samples(self, convs: np.ndarray, t_conv: np.ndarray, t_me: np.ndarray, contents: pa.Array,
                 frag: pa.Array, name_of: np.ndarray, close_at: np.ndarray, first_pos: np.ndarray, chat_of: np.ndarray,
                 hits_of: dict[int, list[Hit]]) -> Closed:
        """Samples of each conversation, decided with array arithmetic for the usual case (short,
        every turn in bounds: kept whole less its trailing user turns); the rest one by one."""
        import pyarrow as pa
        import pyarrow.compute as pc

        r, counts = self.rules, self.sess.counts
        n_turns = len(t_conv)
        start = np.searchsorted(t_conv, convs, side="left")
        end = np.searchsorted(t_conv, convs, side="right")
        lens = pc.utf8_length(contents).to_numpy(zero_copy_only=False).astype(np.int64)
        bad = np.r_[0, np.cumsum((lens < r.min_chars) | (lens > r.max_chars))]
        in_bounds = bad[end] == bad[start]
        # index past the last assistant turn of each conversation (= start when there is none)
        last_me = np.r_[-1, np.maximum.accumulate(np.where(t_me, np.arange(n_turns), -1))]
        reply_end = np.maximum(last_me[end] + 1, start)
        has_turns = end > start
        simple = in_bounds & (end - start <= r.max_turns) & has_turns
        _add(counts, "trailing_user_turn", int((end - reply_end)[simple].sum()))
        _add(counts, "no_reply", int((simple & (reply_end == start)).sum()))
        for c in convs[~has_turns].tolist():  # only removed messages: never closed, hits tie to nothing
            if c in hits_of:
                self.orphans.append((float(first_pos[c]), hits_of.pop(c)))
        # simple conversations with a reply: one sample, turns [start, reply_end)
        one = simple & (reply_end > start)
        s1, e1 = start[one], reply_end[one]
        take = _ranges(s1, e1 - s1)
        per_turn = self._turn_tokens(contents)
        parts: list[pa.Array] = []  # turns JSON: the simple samples, then the rest
        ntok = np.zeros(0, dtype=np.int64)
        if len(s1):
            lists = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(e1 - s1)].astype(np.int32)),
                                             frag.take(pa.array(take)))
            parts.append(pc.binary_join_element_wise("[", pc.binary_join(lists, ", "), "]", ""))
            ntok = self._sample_tokens(per_turn, s1, e1, contents)
        # the rest: Sessionizer's own splitting, one conversation at a time
        not_simple = np.flatnonzero(~simple & has_turns)
        rest: list[tuple[str, list[str]]] = []
        extra = np.zeros(len(not_simple), dtype=np.int64)
        if len(not_simple):
            from persona_studio.clean.dedup import dumps

            rs, re_ = start[not_simple], end[not_simple]
            idx = _ranges(rs, re_ - rs)
            texts = contents.take(pa.array(idx)).to_pylist()
            names = ["", *self.speakers]
            turns_all = [_turn_dict(m, c, names[w]) for m, c, w in
                         zip(t_me[idx].tolist(), texts, name_of[idx].tolist(), strict=True)]
            at = np.r_[0, np.cumsum(re_ - rs)].tolist()
            for j, (a, b) in enumerate(zip(at, at[1:], strict=False)):
                got = self.sess._samples(turns_all[a:b])
                extra[j] = len(got)
                rest.extend((dumps(x), [t["content"] for t in x]) for x in got)
            parts.append(pa.array([js for js, _ in rest], pa.string()))
            ntok = np.r_[ntok, self.tokens.count([(self.system, cont) for _, cont in rest])]
        # everything in close order: per conversation, its samples (0 or 1 when simple, any when not)
        n_samp = np.zeros(len(convs), dtype=np.int64)
        first_samp = np.zeros(len(convs), dtype=np.int64)
        n_samp[one] = 1
        first_samp[one] = np.arange(len(s1))
        n_samp[not_simple] = extra
        first_samp[not_simple] = len(s1) + np.cumsum(extra) - extra
        close_order = np.lexsort((first_pos[convs], close_at[convs]))
        close_order = close_order[has_turns[close_order]]
        pick = _ranges(first_samp[close_order], n_samp[close_order])
        conv_chat = np.repeat(chat_of[convs[close_order]], n_samp[close_order])
        hits: list[tuple[int, list[Hit]]] = []
        if hits_of:
            sample_at = np.cumsum(np.r_[0, n_samp[close_order]])[:-1]
            ordered = convs[close_order]
            for j in np.flatnonzero(np.isin(ordered, np.fromiter(hits_of, np.int64, len(hits_of)))).tolist():
                hits.append((int(sample_at[j]) if n_samp[close_order[j]] else -1, hits_of[int(ordered[j])]))
        turn_counts = np.r_[e1 - s1, [len(c) for _, c in rest]].astype(np.int64)
        if parts:
            jsons = (pa.concat_arrays(parts) if len(parts) > 1 else parts[0]).take(pa.array(pick))
        else:
            jsons = pa.array([], pa.string())
        return Closed(
            jsons=jsons,
            chats=conv_chat,
            chat_names=self.chats,
            n_turns=turn_counts[pick],
            tokens=ntok[pick],
            hits=hits,
        )

    def _turn_tokens(self, contents: pa.Array) -> np.ndarray | None:
        """Estimated tokens of every turn (TokenCounter's estimate, template overhead included),
        None when the real tokenizer counts."""
        import pyarrow.compute as pc

        if self.tokens.exact:
            return None
        n = pc.utf8_length(contents).to_numpy(zero_copy_only=False).astype(np.int64)
        wide = (pc.binary_length(contents).to_numpy(zero_copy_only=False).astype(np.int64) - n) >> 1
        return wide + (n - wide + 3) // 4 + self.tokens.overhead

    def _sample_tokens(self, per_turn: np.ndarray | None, s: np.ndarray, e: np.ndarray,
                       contents: pa.Array) -> np.ndarray:
        if per_turn is None:
            import pyarrow as pa

            texts = contents.take(pa.array(_ranges(s, e - s))).to_pylist()
            at = np.r_[0, np.cumsum(e - s)].tolist()
            pairs = [(self.system, texts[a:b]) for a, b in zip(at, at[1:], strict=False)]
            return np.asarray(self.tokens.count(pairs), dtype=np.int64)
        running = np.r_[0, np.cumsum(per_turn)]
        sys_tok = self.tokens.count([(self.system, [])])[0]
        return running[e] - running[s] + sys_tok



def _json_body(texts: pa.Array) -> pa.Array:
    """Each text as encode_basestring writes it, less the quotes. Most chat text needs no
    escaping; the rest gets Arrow replacements for the usual escapes, and encode_basestring
    itself where a rarer control character (written as \\u00XX) is in it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    at = _rows_with_special_bytes(texts)
    if not len(at):
        return texts
    special = np.zeros(len(texts), dtype=bool)
    special[at] = True
    sub = texts.take(pa.array(at))
    for raw, escaped in _JSON_ESCAPES:  # backslash first: the others add backslashes
        sub = pc.replace_substring(sub, raw, escaped)
    rare = np.flatnonzero(pc.match_substring_regex(sub, _JSON_RARE).to_numpy(zero_copy_only=False))
    if len(rare):
        enc = [encode_basestring(t)[1:-1] for t in texts.take(pa.array(at[rare])).to_pylist()]
        mask = np.zeros(len(sub), dtype=bool)
        mask[rare] = True
        sub = pc.replace_with_mask(sub, pa.array(mask), pa.array(enc, pa.string()))
    return pc.replace_with_mask(texts, pa.array(special), sub)


def _rows_with_special_bytes(texts: pa.Array) -> np.ndarray:
    """Indices of the texts holding a byte JSON must escape (a control character, '"' or '\\'),
    found on the UTF-8 buffer with numpy: in UTF-8 those bytes only ever stand for themselves
    (every byte of a multi-byte character is >= 0x80). One pass for the whole column, where a
    regex call per text costs ~100 ns each."""
    import pyarrow as pa

    if not len(texts):
        return np.zeros(0, dtype=np.int64)
    wide = pa.types.is_large_string(texts.type)
    bufs = texts.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64 if wide else np.int32)[texts.offset:texts.offset + len(texts) + 1]
    lo, hi = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(bufs[2], dtype=np.uint8)[lo:hi] if bufs[2] is not None else np.zeros(0, np.uint8)
    flag = data < 0x20
    flag |= data == 0x22
    flag |= data == 0x5C
    return np.unique(np.searchsorted(offsets, np.flatnonzero(flag) + lo, side="right") - 1)


def _add(counts: Any, key: str, n: int) -> None:
    """counts[key] += n, leaving no key behind for 0 (the summary lists what happened)."""
    if n:
        counts[key] += n


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The indices start..start+count-1 of every (start, count), concatenated."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) + np.repeat(np.asarray(starts, dtype=np.int64) - offsets, counts)


def _global(local: np.ndarray, values: list[str], ids: dict[str, int], names: list[str]) -> np.ndarray:
    """Block-local dictionary codes -> codes stable across the whole run."""
    table = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if v not in ids:
            ids[v] = len(names)
            names.append(v)
        table[i] = ids[v]
    return table[local] if len(values) else local


def _turn_dict(is_me: bool, content: str, name: str) -> dict[str, Any]:
    d: dict[str, Any] = {"role": "assistant" if is_me else "user", "content": content}
    if name:
        d["name"] = name
    return d

