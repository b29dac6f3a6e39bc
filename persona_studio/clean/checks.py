"""The per-message checks of make-dataset, blocked words then PII, and the counts the run
summary reports for them. Both make-dataset paths (the message loop in pipeline.py and the
column path in columnar.py, which calls it only for the texts its pre-check flags) use this,
so the rules and the counting live once.

Speaker and chat names are data too (a contact saved as a phone number): `name` redacts them
by the same rules, once per distinct name. A kind set to 'drop' is redacted there, as in the
text a blocked-word hit keeps (`hit_text`): neither is a message that could be dropped."""

from __future__ import annotations

from collections import Counter

from persona_studio.clean.blocked import BlockedWords
from persona_studio.clean.pii import Redactor


class TextChecks:
    def __init__(self, blocked: BlockedWords, redactor: Redactor):
        self.blocked, self.redactor = blocked, redactor
        self.skipped: Counter[str] = Counter()  # why messages left (the paths add their own reasons)
        self.word_hits: Counter[str] = Counter()
        self.redacted: Counter[str] = Counter()
        self.pii_dropped: Counter[str] = Counter()
        self._names: dict[str, str] = {}

    def name(self, name: str) -> str:
        """A speaker or chat name as it may appear in samples."""
        got = self._names.get(name)
        if got is None:
            got = self._names[name] = self.redactor.redact(name)
        return got

    def hit_text(self, text: str) -> str:
        """The text a blocked-word hit keeps: the message with its personal data redacted."""
        return self.redactor.redact(text)

    def check(self, text: str) -> tuple[str | None, list[str]]:
        """(the text to keep, redacted where PII was found, or None when the message goes;
        the blocked words it holds, [] for none). A message with a blocked word goes whole,
        as the seed tools do; one with a PII kind set to 'drop' goes too."""
        blocked, redactor = self.blocked, self.redactor
        if blocked.search is not None and blocked.search(text) and (words := blocked.hits(text)):
            self.skipped["blocked_word"] += 1
            self.word_hits.update(words)  # each word once per message (hits lists distinct words)
            return None, words
        if redactor.maybe is None or not redactor.maybe(text):
            return text, []
        clean, found = redactor.apply(text)
        if clean is None:  # a 'drop' kind was found
            self.skipped["pii_drop"] += 1
            self.pii_dropped.update(found.keys())
            return None, []
        self.redacted.update(found)
        return clean, []
