"""Blocked words: a message containing one is removed from the dataset, and the hit is recorded.

Words come from `make_dataset.blocked_words` plus an optional word-list file (one word per
line, '#' starts a comment). Matching is case-insensitive substring matching — chat text has
no reliable word boundaries (Chinese has none at all) — done by one alternation regex, longest
words first, so a message costs one C-level scan (though one that tries every word at every
position: a few words are cheap, thousands are not).

`BlockedWords.find_many` answers "which of these texts holds a word?" for a whole column at
once: numpy over the joined texts' code points flags the positions where some word's first
two characters occur, and only those get a regex, of only the words that can start there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from persona_studio.clean.textscan import every_char, joined_code_points, lookup
from persona_studio.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


class BlockedWordsError(UserError, ValueError):
    """The blocked-words file cannot be read."""


def load_words(words: Iterable[str], file: str = "", root: Path | None = None) -> list[str]:
    """The configured words plus those in `file` (relative to `root`), deduplicated, in order."""
    out: list[str] = [w.strip() for w in words if w.strip()]
    if file:
        path = Path(file).expanduser()
        if not path.is_absolute() and root is not None:
            path = root / path
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise BlockedWordsError(f"{path}: not found (make_dataset.blocked_words_file)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BlockedWordsError(f"{path}: cannot read (make_dataset.blocked_words_file): {exc}") from None
        for line in text.splitlines():
            word = line.split("#", 1)[0].strip()
            if word:
                out.append(word)
    seen: set[str] = set()
    uniq = []
    for w in out:
        if w.casefold() not in seen:
            seen.add(w.casefold())
            uniq.append(w)
    return uniq


def case_variants(chars: Iterable[str]) -> dict[str, set[str]]:
    """Every character the regex engine matches to each of `chars` under IGNORECASE, by its own
    rules ('K' also matches the Kelvin sign, 's' also 'ſ', 'i' also 'İ' and 'ı').

    One scan of every code point for all the characters at once, then each character's own
    variants among the (few) hits. Under IGNORECASE a class and a plain literal compile to
    different ops (and the regex turns some alternations into classes), so the variants are
    what either form matches."""
    chars = sorted(set(chars))
    if not chars:
        return {}
    any_wanted = re.compile("[" + "".join(map(re.escape, chars)) + "]", re.IGNORECASE)
    universe = "".join(sorted(set(any_wanted.findall(every_char())) | set(chars)))
    out = {}
    for c in chars:
        found = set(re.findall(re.escape(c), universe, re.IGNORECASE))
        found |= set(re.findall("[" + re.escape(c) + "]", universe, re.IGNORECASE))
        out[c] = found | {c}
    return out


class _Heads:
    """What `find_many` needs to flag "some word may start here" without the big regex, and
    to check a flagged position with the few words that can start there.

    `chars` are the code points the regex accepts as some word's 1st or 2nd character, by
    its own case rules ('K' also matches the Kelvin sign, 's' also 'ſ', 'i' also 'İ'); a
    character is known by its index in this sorted array."""

    def __init__(self, words: list[str]):
        import numpy as np

        heads = {w[:2] for w in words}
        wanted = sorted({c for h in heads for c in h})
        found = case_variants(wanted)
        universe = "".join(sorted(set().union(*found.values())))
        index = {c: i for i, c in enumerate(universe)}
        variants = {c: sorted(index[v] for v in found[c]) for c in wanted}
        m = len(universe)
        first = np.zeros(0x110000, np.bool_)
        # Words by where they may start: ("one", i) for a one-character word whose
        # character may be chars[i], ("two", i * m + j) for a longer one that may begin
        # chars[i], chars[j].
        self._starting: dict[tuple[str, int], list[str]] = {}
        for w in words:
            starts = variants[w[0]]
            first[[ord(universe[i]) for i in starts]] = True
            keys = [("one", i) for i in starts] if len(w) == 1 else [
                ("two", i * m + j) for i in starts for j in variants[w[1]]
            ]
            for key in keys:
                self._starting.setdefault(key, []).append(w)
        self.first: NDArray[np.bool_] = first  # per code point: it may begin a word
        self.chars: NDArray[np.uint32] = np.array([ord(c) for c in universe], np.uint32)
        self.single: NDArray[np.bool_] = np.zeros(m, np.bool_)  # chars[i] alone is a word
        self.single[[i for kind, i in self._starting if kind == "one"]] = True
        pairs = sorted(k for kind, k in self._starting if kind == "two")
        self.pairs: NDArray[np.int64] = np.array(pairs, np.int64)
        self._matchers: dict[tuple[int, int], re.Pattern[str]] = {}

    def matcher(self, i: int, pair: int) -> re.Pattern[str]:
        """The words that may start with chars[i] (and, pair >= 0, go on as `pair` says), as
        one pattern built like `BlockedWords._re`, so it matches by the same rules. (The regex
        parser may turn a different set of alternatives into a class here than there; a class
        and a literal match the same characters under IGNORECASE, checked over all of
        Python 3.11's Unicode tables: no cased character lowercases to an uncased one.)"""
        key = (i, pair)
        rx = self._matchers.get(key)
        if rx is None:
            words = self._starting.get(("one", i), []) + self._starting.get(("two", pair), [])
            pattern = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
            rx = self._matchers[key] = re.compile(pattern, re.IGNORECASE)
        return rx


class BlockedWords:
    def __init__(self, words: Iterable[str]):
        self.words = list(words)
        self._heads: _Heads | None = None  # built on the first `find_many`
        self._by_fold = {w.casefold(): w for w in self.words}
        pattern = "|".join(re.escape(w) for w in sorted(self.words, key=len, reverse=True))
        self._re = re.compile(pattern, re.IGNORECASE) if self.words else None
        # A cheap "any hit at all?" test for hot loops; None when there are no words.
        self.search = self._re.search if self._re is not None else None

    def hits(self, text: str) -> list[str]:
        """The configured words found in `text` (each once, in order of appearance)."""
        if self._re is None:
            return []
        first = self._re.search(text)
        if first is None:
            return []
        found = [self._word(first.group(0))]
        for m in self._re.finditer(text, first.end()):
            w = self._word(m.group(0))
            if w not in found:
                found.append(w)
        return found

    def prefilter(self) -> str | None:
        """An RE2 pattern (Arrow's `match_substring_regex`, case-sensitive) that matches every
        text `search` matches, maybe a few more: each character of a word becomes the class of
        all its `case_variants`, since RE2's own case folding is not Python's (it leaves out
        'İ' and 'ı' for 'i', for one). None: no words, or the empty word."""
        if self._re is None or "" in self.words:
            return None
        variants = case_variants(c for w in self.words for c in w)

        def one(c: str) -> str:
            v = variants.get(c)
            return "[" + "".join(re.escape(x) for x in sorted(v)) + "]" if v and len(v) > 1 else re.escape(c)

        return "|".join("".join(map(one, w)) for w in self.words)

    def find_many(self, texts: Sequence[str]) -> list[int]:
        r"""The indices (ascending) of the texts holding a word, i.e.
        `[i for i, t in enumerate(texts) if self.search(t)]`, without a regex call per text.

        numpy flags each position where some word's first two characters occur (its first
        alone for a one-character word); each flagged position is then tried with only the
        words that can start there. Every real match gets tried: the regex matches character
        by character, each against the variants `_Heads` lists for that word character, and
        it has no lookarounds or anchors that could see past a text's edge. A flag that spans
        the "\x00" between two texts (possible only for a word holding "\x00") fails its
        try, which looks at its own text only.

        Why not `self.search` on the flagged texts: the regex engine tries every alternative
        at every position, so with a word-list file of ~2000 words `search` costs ~90 µs per
        text, and with that many words a good share of texts hold some word's first two
        characters."""
        if self._re is None or not texts:
            return []
        if "" in self.words:  # the empty word matches every text, empty ones included
            return list(range(len(texts)))
        import numpy as np

        if self._heads is None:
            self._heads = _Heads(self.words)
        heads = self._heads
        codes, ends = joined_code_points(texts)
        pos = np.flatnonzero(lookup(heads.first, codes))
        if not len(pos):
            return []
        chars, m = heads.chars, len(heads.chars)
        k0 = np.searchsorted(chars, codes[pos])  # every flagged character is in `chars`
        nxt = pos + 1
        follow = codes[np.minimum(nxt, len(codes) - 1)]
        k1 = np.minimum(np.searchsorted(chars, follow), m - 1)
        pair = k0.astype(np.int64) * m + k1
        two = np.zeros(len(pos), np.bool_)
        if len(heads.pairs):
            at = np.minimum(np.searchsorted(heads.pairs, pair), len(heads.pairs) - 1)
            two = (nxt < len(codes)) & (chars[k1] == follow) & (heads.pairs[at] == pair)
        flag = heads.single[k0] | two
        where = pos[flag]
        text = np.searchsorted(ends, where)
        offset = where - np.concatenate(([0], ends + 1))[text]
        found: list[int] = []
        matcher = heads.matcher
        for i, off, c, p in zip(
            text.tolist(), offset.tolist(), k0[flag].tolist(), np.where(two[flag], pair[flag], -1).tolist(),
            strict=True,
        ):
            if (not found or found[-1] != i) and matcher(c, p).match(texts[i], off):
                found.append(i)
        return found

    def _word(self, matched: str) -> str:
        return self._by_fold.get(matched.casefold(), matched)
