"""Blocked words: a message containing one is removed from the dataset, and the hit is recorded.

Words come from `make_dataset.blocked_words` plus an optional word-list file (one word per
line, '#' starts a comment). Matching is case-insensitive substring matching — chat text has
no reliable word boundaries (Chinese has none at all) — done by one alternation regex, longest
words first, so thousands of words still cost one C-level scan per message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from persona_studio.errors import UserError


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


class BlockedWords:
    def __init__(self, words: Iterable[str]):
        self.words = list(words)
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

    def _word(self, matched: str) -> str:
        return self._by_fold.get(matched.casefold(), matched)
