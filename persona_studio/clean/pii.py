"""Personal data in message text: find it, and redact it with a typed placeholder.

One combined regex finds candidates of every enabled kind in a single pass; a candidate
only counts after its own check (ID-card checksum, Luhn for bank cards, `ipaddress` for
IPv6). A cheap pre-check (`_PRECHECK`) skips the big regex for the chat lines that cannot
hold any of them, which is most. Ordinary numbers (prices, times, years, counts)
survive: phone patterns need a mobile prefix, a '+' country code or a landline shape; bank
cards need 13-19 digits starting 2-6 and a valid Luhn sum.

`Redactor.candidates` answers the pre-check for a whole column of texts at once (numpy over
the joined texts' code points, then the real pre-check on the few texts it flags), for
make-dataset's block-at-a-time loop.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from persona_studio.clean.textscan import every_char, joined_code_points, lookup

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

PLACEHOLDERS: dict[str, str] = {
    "url": "<URL>",
    "email": "<EMAIL>",
    "ip": "<IP>",
    "id_card": "<ID>",
    "bank_card": "<BANK_CARD>",
    "phone": "<PHONE>",
}
KINDS = tuple(PLACEHOLDERS)

# RFC 3986 characters only: in Chinese chat a link is often followed by text with no space.
_URL_TAIL = r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*"
_TLDS = r"com|cn|net|org|io|me|cc|top|xyz|info|edu|gov|co|uk|de|jp|ru|app|dev|ai"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"

# Order matters: at one position the first alternative that matches wins, so the most
# specific shapes (URLs that may hold emails/IPs/digits, then emails, then IPs) come first.
_PATTERNS: dict[str, str] = {
    "url": (
        rf"(?:https?://|ftp://|www\.){_URL_TAIL}"
        rf"|(?<![A-Za-z0-9_@.-])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:{_TLDS})(?![A-Za-z0-9@-])(?:/{_URL_TAIL})?"
    ),
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "ip": (
        rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)"
        r"|(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])"
    ),
    "id_card": r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])",
    "bank_card": r"(?<![\d+])[2-6](?:\d{12,18}|\d{3}(?:[ -]\d{4}){3}(?:[ -]?\d{1,3})?)(?!\d)",
    "phone": (
        r"(?<![\d+])(?:\+?86[ -]?)?1[3-9]\d(?:\d{8}|[ -]\d{4}[ -]\d{4})(?!\d)"  # CN mobile
        r"|\+\d{1,3}(?:[ -]?\(\d{1,4}\))?(?:[ -]?\d{2,5}){2,5}(?!\d)"  # +CC ... international
        r"|(?<!\d)0\d{2,3}-\d{7,8}(?!\d)"  # CN landline 010-12345678
        r"|(?<![\d-])\(\d{3}\) ?\d{3}-\d{4}(?!\d)|(?<![\d-])\d{3}-\d{3}-\d{4}(?![\d-])"  # NANP
    ),
}

# Every pattern above needs one of these: 7 digits in a row (IDs, cards, mobiles, landlines),
# 3+4 digits with a separator, a '+' country code, '@', an IPv6 colon pair, a dot before a
# letter (domains, www.) or between digits (IPv4). Prices, times and counts have none of them.
# The alternatives are grouped by their first character (the same strings match): at each
# position the regex engine then tries one branch per character class instead of eight, which
# makes this scan, run on every message, about 40% cheaper.
# `Redactor.candidates` re-implements a looser form of this check in numpy: change it together.
_PRECHECK = re.compile(r"\d(?:\d{6}|\d\d[ -]\d{4}|\.\d)|\+\d|@|:(?::|[0-9A-Fa-f]{1,4}:)|\.[A-Za-z]")

# Character classes of `_PRECHECK`, one byte per code point (`_precheck_classes`). The four
# punctuation marks get values of their own above the bit flags, so one `>= _DOT` comparison
# finds them all (no character is both a mark and a digit or letter).
_DIGIT, _HEX, _LETTER = 1, 2, 4
_DOT, _PLUS, _AT, _COLON = 8, 16, 32, 64
# Zero bytes after the last character, so "the character k after this one" is always an index.
_PAD = 8


@functools.cache
def _precheck_classes() -> NDArray[np.uint8]:
    import numpy as np

    table = np.zeros(0x110000, np.uint8)
    chars = every_char()
    for pattern, flag in ((r"\d", _DIGIT), (r"[0-9A-Fa-f]", _HEX), (r"[A-Za-z]", _LETTER)):
        table[[ord(c) for c in re.findall(pattern, chars)]] |= flag
    for mark, value in ((".", _DOT), ("+", _PLUS), ("@", _AT), (":", _COLON)):
        table[ord(mark)] = value
    return table


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_card_ok(s: str) -> bool:
    """GB 11643 checksum of an 18-character resident ID number."""
    if len(s) != 18 or not s[:17].isdigit():
        return False
    total = sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == s[17].upper()


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _ipv6_ok(s: str) -> bool:
    if sum(1 for g in s.split(":") if g) < 2:  # "e::" is valid IPv6 but far likelier prose
        return False
    # "12:30:45" (a time) has too few groups and no "::": ipaddress rejects it.
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def _intl_phone_ok(s: str) -> bool:
    n = sum(c.isdigit() for c in s)
    return 8 <= n <= 15


class Redactor:
    """Applies the per-kind action ('redact' | 'drop' | 'keep') of `make_dataset.pii`."""

    def __init__(self, actions: Mapping[str, str] | object):
        if not isinstance(actions, Mapping):
            actions = {k: getattr(actions, k) for k in KINDS}
        self.actions = {k: actions.get(k, "redact") for k in KINDS}
        active = [k for k in KINDS if self.actions[k] != "keep"]
        self._re = re.compile("|".join(f"(?P<{k}>{_PATTERNS[k]})" for k in active)) if active else None
        self._counts: dict[str, int] = {}
        self._drop = False
        # "Could this text hold anything?" for hot loops; None when every kind is kept.
        self.maybe = _PRECHECK.search if self._re is not None else None

    def candidates(self, texts: Sequence[str]) -> list[int]:
        r"""The indices (ascending) of the texts `maybe` is truthy for, i.e.
        `[i for i, t in enumerate(texts) if self.maybe(t)]`, without a regex call per text.

        numpy flags every position where a `_PRECHECK` alternative could start by looking at
        its neighbours only, which is looser than the regex (any "12:30" passes the colon
        test, "1234 5" the digit test): the few flagged texts (~2% of chat) then get the real
        `_PRECHECK.search`, so the result is exact as long as every real match is flagged.
        It is, because each test reads only characters that its alternative's match consumes:
          \d\d{6}, \d\d\d[ -]\d{4}     digits at p, p+1, p+2 and p+4
          \d\.\d                       a '.' with a digit on each side
          \+\d   @   :(?::|[0-9A-Fa-f]{1,4}:)   '+' then a digit; '@'; ':' then ':' or hex
          \.[A-Za-z]                   a '.' then an ASCII letter
        and the "\x00" between two texts is none of those characters, so a match inside a
        text is flagged at a position inside that text (and a flag spanning a boundary is
        only a false alarm). `_PRECHECK` has no lookarounds or anchors that could see past a
        text's edge: `search` on the text alone matches wherever the joined scan does."""
        if self._re is None or not texts:
            return []
        import numpy as np

        codes, ends = joined_code_points(texts)
        cls = lookup(_precheck_classes(), codes, _PAD)
        digit = (cls & _DIGIT).view(np.bool_)
        run = digit[:-4] & digit[1:-3]
        run &= digit[2:-2]
        run &= digit[4:]
        marks = np.flatnonzero(cls >= _DOT)
        here, after = cls[marks], cls[marks + 1]
        before = cls[marks - 1]  # at position 0 this wraps to the (zero) padding
        ok = (here == _AT) | ((here == _PLUS) & ((after & _DIGIT) != 0))
        ok |= (here == _COLON) & ((after == _COLON) | ((after & _HEX) != 0))
        ok |= (here == _DOT) & (((after & _LETTER) != 0) | ((after & before & _DIGIT) != 0))
        flagged = np.concatenate((np.flatnonzero(run), marks[ok]))
        search = _PRECHECK.search
        return [i for i in np.unique(np.searchsorted(ends, flagged)).tolist() if search(texts[i])]

    def apply(self, text: str) -> tuple[str | None, dict[str, int]]:
        """Return (new text, or None when a 'drop' kind was found; counts per kind found)."""
        if self._re is None or not _PRECHECK.search(text):
            return text, {}
        self._counts = {}
        self._drop = False
        out = self._re.sub(self._replace, text)
        return (None if self._drop else out), self._counts

    def _replace(self, m: re.Match[str]) -> str:
        kind = m.lastgroup or ""
        s = m.group(0)
        if kind == "url":
            # Sentence punctuation right after a link is not part of it.
            stripped = s.rstrip(".,;:!?)]}'\"")
            tail = s[len(stripped):]
            return self._hit("url", stripped) + tail
        if kind == "ip" and ":" in s and not _ipv6_ok(s):
            return s
        if kind == "id_card" and not id_card_ok(s):
            # An 18-digit run with a bad checksum may still be a bank card.
            if s.isdigit() and s[0] in "23456" and self.actions["bank_card"] != "keep" and luhn_ok(s):
                return self._hit("bank_card", s)
            return s
        if kind == "bank_card" and not luhn_ok(s.replace(" ", "").replace("-", "")):
            return s
        if kind == "phone" and s.startswith("+") and not _intl_phone_ok(s):
            return s
        return self._hit(kind, s)

    def _hit(self, kind: str, s: str) -> str:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        if self.actions[kind] == "drop":
            self._drop = True
        return PLACEHOLDERS[kind]
