"""make-dataset for chat exports, a window of messages at a time with numpy instead of a
Python step per message. Same result as `Sessionizer` fed message by message (a test feeds
both the same random chats). On the 1M-message benchmark export this halves make-dataset
(6.6 s -> 3.9 s CPU); what is left is mostly per-sample work: JSON, hashes and the ~1 s it
takes SQLite to store 100k samples.

Why the rules vectorise: every place where `Sessionizer` starts a new conversation depends
only on the message and the one before it in the same chat (see `_breaks`), never on state
further back, so all of them are found with array comparisons. Turns are runs of one role
inside a conversation; only conversations that need splitting (too many turns, a turn too
short or long, no final reply) go through `Sessionizer._samples` one by one.

Events, per chat, in message order: ADD (a text message that joins the talk), TOUCH (a
message removed by a blocked word or PII 'drop': it still counts for the gap rule) and CUT
(a non-text message when `non_text` is "cut"). Conversations still open at the end of a
window are carried, as their events, into the next one, so memory stays one window deep.
"""

from __future__ import annotations

from collections.abc import Callable
from json.encoder import encode_basestring  # type: ignore[attr-defined]  # the C encoder
from operator import itemgetter
from typing import Any

import numpy as np

from persona_studio.clean.sessionize import Sessionizer
from persona_studio.store.blocks import Block

ADD, TOUCH, CUT = 0, 1, 2
_TEXT_KINDS = frozenset({"text", "quote"})
WINDOW = 1 << 16  # messages per window: ~60 MB of Python objects at most

# Finished conversations, in close order: (chat, samples, hits); a sample is (turns JSON, turn contents).
Sample = tuple[str, list[str]]
Emit = Callable[[list[tuple[str, list[Sample], list[tuple[str, tuple[int, int], str]]]]], None]


class _Events:
    """Column arrays of events (ADD/TOUCH/CUT) in stream order, plus what ADDs and TOUCHes carry."""

    def __init__(self) -> None:
        self.pos: list[np.ndarray] = []  # global stream position (orders closes across windows)
        self.key: list[np.ndarray] = []
        self.ts: list[np.ndarray] = []
        self.etype: list[np.ndarray] = []
        self.me: list[np.ndarray] = []
        self.speaker: list[str] = []
        self.text: list[str] = []
        self.hits: list[list[tuple[str, tuple[int, int], str]] | None] = []

    def extend(self, other: _Events, take: np.ndarray) -> None:
        """Append `other`'s events at indices `take` (sorted), all as one chunk."""
        if not len(take):
            return
        for name in ("pos", "key", "ts", "etype", "me"):
            getattr(self, name).append(np.concatenate(getattr(other, name))[take])
        if len(take) == len(other):  # everything, in order (a new block)
            self.speaker.extend(other.speaker)
            self.text.extend(other.text)
            self.hits.extend(other.hits)
            return
        for mine, theirs in ((self.speaker, other.speaker), (self.text, other.text), (self.hits, other.hits)):
            mine.extend(_pick(theirs, take.tolist()))

    def __len__(self) -> int:
        return len(self.text)


class ColumnarSessionizer:
    """Feeds Blocks of one import; hands finished conversations to `emit` in batches, in the
    order `Sessionizer` would close them."""

    def __init__(self, sess: Sessionizer, blocked: Any, redactor: Any, cut_non_text: bool,
                 skipped: Any, word_hits: Any, redacted: Any, pii_dropped: Any, emit: Emit):
        self.sess, self.rules = sess, sess.rules
        self.blocked, self.redactor, self.cut_non_text = blocked, redactor, cut_non_text
        self.skipped, self.word_hits, self.redacted, self.pii_dropped = skipped, word_hits, redacted, pii_dropped
        self.emit = emit
        self.keys: dict[str, int] = {}
        self.chats: list[str] = []
        self.pending = _Events()
        self.closing: list[tuple[float, float, str, list[Sample], list[Any]]] = []
        self.orphans: list[tuple[float, list[Any]]] = []
        self.n = 0  # messages seen (stream position)

    def feed(self, block: Block, import_id: int) -> None:
        ev = self._events(block, import_id)
        self.pending.extend(ev, np.arange(len(ev)))
        if len(self.pending) >= WINDOW:
            self._window(final=False)

    def finish(self) -> None:
        self._window(final=True)

    # -- per block: classify messages into events --------------------------------------------

    def _events(self, b: Block, import_id: int) -> _Events:
        n = len(b)
        base, self.n = self.n, self.n + n
        skipped = self.skipped
        kinds = b.kind
        keep = np.ones(n, dtype=bool)
        etype = np.full(n, ADD, dtype=np.int8)
        if kinds.count("text") + kinds.count("quote") != n:  # a quote-reply's text is the reply
            other = np.flatnonzero(~np.fromiter(map(_TEXT_KINDS.__contains__, kinds), dtype=bool, count=n))
            skipped.update([f"non_text:{k}" for k in _pick(kinds, other.tolist())])
            if self.cut_non_text:
                etype[other] = CUT
            else:
                keep[other] = False
        texts = list(map(str.strip, b.text))
        lens = np.fromiter(map(len, texts), dtype=np.int64, count=n)
        for i in np.flatnonzero((lens == 0) & (etype == ADD) & keep).tolist():
            skipped["empty"] += 1
            keep[i] = False
        hits: list[list[tuple[str, tuple[int, int], str]] | None] = [None] * n
        live = keep & (etype == ADD)
        if self.blocked.search is not None:
            for i in self.blocked.find_many(texts):
                if not live[i] or not (words := self.blocked.hits(texts[i])):
                    continue
                skipped["blocked_word"] += 1
                ref = (import_id, b.first_seq + i)
                for w in words:
                    self.word_hits[w] += 1
                hits[i] = [(w, ref, texts[i]) for w in words]
                etype[i] = TOUCH
                live[i] = False
        if self.redactor.maybe is not None:
            for i in self.redactor.candidates(texts):
                if not live[i]:
                    continue
                clean, found = self.redactor.apply(texts[i])
                if clean is None:
                    skipped["pii_drop"] += 1
                    for k in found:
                        self.pii_dropped[k] += 1
                    etype[i] = TOUCH
                    continue
                for k, c in found.items():
                    self.redacted[k] += c
                texts[i] = clean
        keys = self.keys
        for c in set(b.chat).difference(keys):
            keys[c] = len(keys)
            self.chats.append(c)
        ev = _Events()
        idx = np.flatnonzero(keep)
        ev.pos.append(idx + base)
        ev.key.append(np.fromiter(map(keys.__getitem__, b.chat), dtype=np.int64, count=n)[idx])
        ev.ts.append(np.asarray(b.ts, dtype=np.float64)[idx])
        ev.etype.append(etype[idx])
        ev.me.append(np.frombuffer(b.is_me, dtype=np.uint8)[idx].astype(bool))
        take = idx.tolist()
        if len(take) == n:
            ev.speaker, ev.text, ev.hits = b.speaker, texts, hits
        else:
            ev.speaker, ev.text, ev.hits = _pick(b.speaker, take), _pick(texts, take), _pick(hits, take)
        return ev

    # -- per window: conversations and turns ---------------------------------------------------

    def _window(self, final: bool) -> None:
        ev = self.pending
        self.pending = _Events()
        m = len(ev)
        if m:
            pos, key, ts = np.concatenate(ev.pos), np.concatenate(ev.key), np.concatenate(ev.ts)
            etype, me = np.concatenate(ev.etype), np.concatenate(ev.me)
            order = np.argsort(key, kind="stable")  # per chat, in stream order
            k, t, e, r = key[order], ts[order], etype[order], me[order]
            start, cut_gap = self._breaks(k, t, e, r)
            self.sess.counts["cut_same_role_gap"] += int(cut_gap.sum())
            conv = np.cumsum(start) - 1  # conversation number per event (sorted order)
            # The last conversation of each chat is still open unless a CUT ended it.
            last_of_key = np.ones(m, dtype=bool)
            last_of_key[:-1] = k[1:] != k[:-1]
            open_conv = np.zeros(int(conv[-1]) + 1, dtype=bool)
            open_conv[conv[last_of_key & (e != CUT)]] = True
            if not final:
                carry = np.sort(order[open_conv[conv] & (e != CUT)])
                self.pending.extend(ev, carry)
            self._convs(ev, order, pos, conv, e, r, k, open_conv, final)
        self.closing.sort(key=lambda c: (c[0], c[1]))
        self.emit([(chat, samples, hits) for _, _, chat, samples, hits in self.closing])
        self.closing.clear()
        if final:
            self.orphans.sort(key=lambda o: o[0])
            self.emit([("", [], hits) for _, hits in self.orphans])
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

    def _convs(self, ev: _Events, order: np.ndarray, pos: np.ndarray, conv: np.ndarray,
               e: np.ndarray, r: np.ndarray, k: np.ndarray, open_conv: np.ndarray, final: bool) -> None:
        """Turns and samples of every closed conversation (all of them when `final`), queued
        in `closing` with the position Sessionizer would close them at."""
        n_conv = len(open_conv)
        closed = np.ones(n_conv, dtype=bool) if final else ~open_conv
        starts = np.flatnonzero(np.r_[True, conv[1:] != conv[:-1]])  # first event of each conv
        first_pos = pos[order[starts]].astype(np.float64)
        chat_of = k[starts]
        # A conversation closes where the next one of its chat starts (a break, or a CUT whose
        # pseudo-conversation comes next); the last one of a chat closes at the end, in the
        # order the conversations were opened (Sessionizer.close_all walks a dict).
        close_at = np.full(n_conv, np.inf)
        same = np.flatnonzero(chat_of[1:] == chat_of[:-1])
        close_at[same] = first_pos[same + 1]
        hits_of: dict[int, list[Any]] = {}
        for j in np.flatnonzero(e == TOUCH).tolist():
            h = ev.hits[int(order[j])]
            if h:
                hits_of.setdefault(int(conv[j]), []).extend(h)
        adds = np.flatnonzero(e == ADD)
        ac, ar = conv[adds], r[adds]
        new_turn = np.ones(len(adds), dtype=bool)
        new_turn[1:] = (ac[1:] != ac[:-1]) | (ar[1:] != ar[:-1])
        t_first = np.flatnonzero(new_turn)
        t_conv, t_me = ac[t_first], ar[t_first]
        keep = closed[t_conv]
        t_len = np.diff(np.r_[t_first, len(adds)])
        t_first, t_conv, t_me, t_len = t_first[keep], t_conv[keep], t_me[keep], t_len[keep]
        src = order[adds]
        text = np.array(ev.text, dtype=object)
        speaker = np.array(ev.speaker, dtype=object)
        first_src = src[t_first]
        contents = text[first_src]
        names = np.where(t_me, "", speaker[first_src])
        sep = self.rules.separator
        multi = np.flatnonzero(t_len > 1)
        if len(multi):  # turns of several messages: join them (plain lists: numpy per item is slow)
            src_l, text_l, speaker_l = src.tolist(), ev.text, ev.speaker
            for j, a, n, me in zip(multi.tolist(), t_first[multi].tolist(), t_len[multi].tolist(),
                                   t_me[multi].tolist(), strict=True):
                idx = src_l[a:a + n]
                who = [speaker_l[i] for i in idx]
                if not me and len(set(who)) > 1:
                    contents[j] = sep.join([f"{s}: {text_l[i]}" for s, i in zip(who, idx, strict=True)])
                    names[j] = ""
                else:
                    contents[j] = sep.join([text_l[i] for i in idx])
        # Each turn's JSON as dedup.dumps writes it (a comprehension beats numpy object arrays here)
        eb = encode_basestring
        frag = [
            f'{{"role": "assistant", "content": {eb(c)}}}' if me
            else f'{{"role": "user", "content": {eb(c)}, "name": {eb(nm)}}}' if nm
            else f'{{"role": "user", "content": {eb(c)}}}'
            for c, nm, me in zip(contents.tolist(), names.tolist(), t_me.tolist(), strict=True)
        ]
        self._emit_convs(np.flatnonzero(closed), t_conv, t_me, contents, names, frag,
                         close_at, first_pos, chat_of, hits_of)

    def _emit_convs(self, convs: np.ndarray, t_conv: np.ndarray, t_me: np.ndarray, contents: np.ndarray,
                    names: np.ndarray, frag: list[str], close_at: np.ndarray, first_pos: np.ndarray,
                    chat_of: np.ndarray, hits_of: dict[int, list[Any]]) -> None:
        """Samples of each conversation, decided with array arithmetic for the usual case (short,
        every turn in bounds: kept whole less its trailing user turns); the rest one by one."""
        r, counts = self.rules, self.sess.counts
        n_turns = len(t_conv)
        start = np.searchsorted(t_conv, convs, side="left")
        end = np.searchsorted(t_conv, convs, side="right")
        lens = np.fromiter(map(len, contents.tolist()), dtype=np.int64, count=n_turns)
        bad = np.r_[0, np.cumsum((lens < r.min_chars) | (lens > r.max_chars))]
        in_bounds = bad[end] == bad[start]
        # index past the last assistant turn of each conversation (= start when there is none)
        idx = np.arange(n_turns)
        last_me = np.r_[-1, np.maximum.accumulate(np.where(t_me, idx, -1))]
        reply_end = np.maximum(last_me[end] + 1, start)
        simple = in_bounds & (end - start <= r.max_turns)
        chats, contents_l = self.chats, contents.tolist()
        for c, s, e, re_, ok in zip(convs.tolist(), start.tolist(), end.tolist(), reply_end.tolist(),
                                    simple.tolist(), strict=True):
            hits = hits_of.get(c, [])
            if s == e:
                if hits:  # only removed messages: Sessionizer never closes it, hits tie to nothing
                    self.orphans.append((float(first_pos[c]), hits))
                continue
            if ok:
                if re_ < e:
                    counts["trailing_user_turn"] += e - re_
                if re_ == s:
                    counts["no_reply"] += 1
                    samples: list[Sample] = []
                else:
                    samples = [("[" + ", ".join(frag[s:re_]) + "]", contents_l[s:re_])]
            else:
                turns = [_turn_dict((bool(t_me[i]), contents_l[i], names[i])) for i in range(s, e)]
                samples = [(_dumps(x), [t["content"] for t in x]) for x in self.sess._samples(turns)]
            self.closing.append((float(close_at[c]), float(first_pos[c]), chats[int(chat_of[c])], samples, hits))


def _pick(items: list[Any], idx: list[int]) -> list[Any]:
    """items[i] for i in idx, at C speed (itemgetter returns a bare item for one index)."""
    if len(idx) > 1:
        return list(itemgetter(*idx)(items))
    return [items[i] for i in idx]


def _turn_dict(t: tuple[bool, str, str]) -> dict[str, Any]:
    is_me, content, name = t
    d: dict[str, Any] = {"role": "assistant" if is_me else "user", "content": content}
    if name:
        d["name"] = name
    return d


def _dumps(obj: Any) -> str:
    from persona_studio.clean.dedup import dumps

    return dumps(obj)
