"""Personal data in message text: find it, and redact it with a typed placeholder.

Detection runs on an NFKC-normalised copy of the text (full-width digits and letters, the
full-width '＠', '．', '＋' become ASCII; every Unicode decimal digit becomes 0-9), and the
spans found are mapped back onto the original, which keeps everything else as written.
- One combined regex finds candidates of the shaped kinds (URLs incl. IDN domains and short
  links, e-mail incl. IDN, IPv4/6, national IDs, IBANs, bank cards); each candidate counts only
  after its library check (python-stdnum: CN resident ID, US SSN, BR CPF, KR RRN, IN Aadhaar,
  JP My Number, FR NIR, ES DNI, IT codice fiscale, IBAN, Luhn).
- Phone numbers are Google's libphonenumber (`phonenumbers.PhoneNumberMatcher`, VALID
  leniency) for each region in `make_dataset.pii.phone_regions`: national formats without
  a country code, '+' and '00'-style international numbers. It is the slow part (~0.5 ms a
  number for ten regions), so it only sees the runs of digits and phone punctuation, with a
  few characters around them, that the shaped kinds left and that have a phone's shape (7
  digits with phone punctuation between them, or a '+' before a digit) and are no written
  date; its answers are cached per run.
Ordinary numbers (prices, years, times, dates, versions, order numbers, 16-digit numbers that
fail Luhn) survive: besides the library checks, a phone written without a country code needs
7 digits and must not read as a date or start with a year ('2024-000123').

A cheap pre-check (`Redactor.maybe`, the regex `_PRECHECK`) decides which texts are looked at
at all: `apply` returns a text it does not flag untouched, so "the exact check" is the
pre-check plus the detectors. `Redactor.candidates` (numpy over a whole column) and
`Redactor.re2_pattern` (make-dataset's Arrow pre-check) flag a superset of `_PRECHECK`'s texts.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from persona_studio.clean.textscan import every_char, joined_code_points, lookup

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

PLACEHOLDERS: dict[str, str] = {
    "url": "<URL>",
    "email": "<EMAIL>",
    "ip": "<IP>",
    "id_card": "<ID>",
    "iban": "<IBAN>",
    "bank_card": "<BANK_CARD>",
    "phone": "<PHONE>",
}
KINDS = tuple(PLACEHOLDERS)
# Regions without a trunk prefix (ES, IT) make every 9-10 digit number "national": not default.
DEFAULT_REGIONS = ("CN", "US", "GB", "DE", "FR", "JP", "IN", "BR", "KR", "AU")

# -- the pre-check: which texts are looked at ---------------------------------------------------
# Written with classes that mean the same to Python's re and to RE2 (`_re2`), except \d (RE2's
# is ASCII only) and the letter class (RE2 gets a looser one). Phone punctuation as
# libphonenumber knows it (its VALID_PUNCTUATION, full-width forms included) plus spaces.
_PUNCT = " \t\u00a0\u3000\u00ad\u200b\u2060\\-\u2010-\u2015\u2212\u30fc\uff0d/\uff0f.\uff0e()\uff08\uff09\\[\\]\uff3b\uff3d~\u2053\u223c\uff5e"
_P = f"[{_PUNCT}]"
_LETTER = r"[^\W\d_]"
_PRECHECK_SRC = (
    rf"\d(?:{_P}{{0,4}}\d){{6}}"  # phone numbers, IDs, cards, IBANs: 7 digits, phone punctuation between
    rf"|[+\uff0b\ufe62]{_P}?\d"  # +CC
    r"|[@\uff20\ufe6b]"  # e-mail
    r"|\d[.\uff0e]\d"  # IPv4
    r"|:(?::|[0-9A-Fa-f]{1,4}:|//)"  # IPv6, scheme://
    rf"|[.\uff0e\uff61]{_LETTER}"  # domains, www.
    r"|[A-Za-z]{6}\d\d"  # Italian codice fiscale
)
_PRECHECK = re.compile(_PRECHECK_SRC)


def _re2(src: str) -> str:
    r"""`src` for RE2, matching at least what Python matches: RE2's \d is ASCII only, and it
    has no [^\W\d_]; any non-ASCII character stands in for a letter there (looser is fine)."""
    src = src.replace(_LETTER, r"[A-Za-z\x{80}-\x{10FFFF}]").replace(r"\d", r"\p{Nd}")
    return re.sub(r"\\u([0-9a-f]{4})", r"\\x{\1}", src)  # RE2 writes \uXXXX as \x{XXXX}


# -- detection, on the normalised text ---------------------------------------------------------
_A = "A-Za-z0-9\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff"  # Latin (+ accents), Greek, Cyrillic, digits
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
# A label is one script family: in Chinese text a link often follows a word with no space
# ("访问baidu.com"), and "访问baidu" must not become one label.
_LABEL = rf"(?:[{_A}][{_A}\-]*|[{_CJK}]+)"
_ASCII_TLDS = (
    "com net org edu gov mil int info biz top xyz site online shop store club vip app dev ai io me co cc tv ly gl "
    "gd be im gy to link click page cn hk tw jp kr uk de fr es eu ru us ca au br in sg nl ch se pl vn th id my ph "
    "tk ws la"
).split()
# Lower or upper case, not mixed: "Thanks.Info follows" is a typo, not a link.
_TLDS = (
    "|".join(_ASCII_TLDS) + "|" + "|".join(t.upper() for t in _ASCII_TLDS) + r"|xn--[a-z0-9\-]+"
    "|中国|中國|公司|网络|網絡|在线|网址|商城|网店|中文网|香港|台湾|台灣|新加坡|рф|рус|укр|бел|한국|みんな"
)
# Short-link hosts whose top-level domain is not in the list above (they always carry a path).
_SHORT = r"(?i:shorturl\.at|s\.id|qr\.ae|spoti\.fi|pin\.it|j\.mp|discord\.gg|t\.ly|is\.gd)"
_TAIL = r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%\u00c0-\u024f\u0400-\u04ff]*"  # RFC 3986 (+ accented letters)
_HOST = rf"(?:{_LABEL}\.)*{_LABEL}(?::\d{{1,5}})?"
_PATTERNS: dict[str, str] = {
    "url": (
        rf"(?i:(?:https?|ftp)://)(?:[{_A}._~%!$&'()*+,;=:\-]+@)?{_HOST}(?:[/?#]{_TAIL})?"
        rf"|(?i:www)\.{_HOST}(?:[/?#]{_TAIL})?"
        rf"|(?<![{_A}@._\-/]){_SHORT}/{_TAIL}"
        rf"|(?<![{_A}@._\-/])(?:{_LABEL}\.)+(?:{_TLDS})(?![{_A}@\-])(?:[/?#]{_TAIL})?"
    ),
    "email": rf"(?:[{_A}._%+\-]+|[{_CJK}]+)@(?:{_LABEL}\.)+(?:[{_A}]{{2,}}|[{_CJK}]{{2,}})",
    "ip": (
        r"(?<![\d.])(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}(?!\.?\d)"
        r"|(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])"
    ),
    # National IDs, in the shapes people write them; each is checked by its stdnum module.
    "id_card": (
        r"(?<![0-9A-Za-z])[1-9]\d{5}[ -]?(?:18|19|20)\d\d[ -]?\d\d[ -]?\d\d[ -]?\d{3}[0-9Xx](?![0-9A-Za-z])"  # CN
        r"|(?<![\d-])\d{3}-\d\d-\d{4}(?![\d-])"  # US SSN
        r"|(?<![\d.])\d{3}\.\d{3}\.\d{3}-\d\d(?!\d)"  # BR CPF
        r"|(?<![\d-])\d{6}-\d{7}(?![\d-])"  # KR RRN
        r"|(?<!\d)(?<!\d )[12] ?\d\d ?\d\d ?\d\d ?\d{3} ?\d{3} ?\d\d(?! ?\d)"  # FR NIR
        r"|(?<!\d)(?<!\d[ -])(?:\d{4} \d{4} \d{4}|\d{4}-\d{4}-\d{4})(?![ -]?\d)"  # IN Aadhaar, JP My Number
        r"|(?<![0-9A-Za-z])\d{8}-?[A-Za-z](?![0-9A-Za-z])"  # ES DNI
        r"|(?<![0-9A-Za-z])[A-Za-z]{6}\d\d[A-Za-z]\d\d[A-Za-z]\d{3}[A-Za-z](?![0-9A-Za-z])"  # IT CF
    ),
    "iban": r"(?<![0-9A-Za-z])[A-Z]{2}\d\d(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![0-9A-Za-z])",
    "bank_card": (
        r"(?<![\d+])(?:[2-6]\d{12,18}"
        r"|[2-6]\d{3}[ -]\d{4}[ -]\d{4}[ -]\d{4}(?:[ -]\d{1,3})?"
        r"|3\d{3}[ -]\d{6}[ -]\d{4,5})(?!\d)"  # Amex 4-6-5, Diners 4-6-4
    ),
}
_REGEX_KINDS = tuple(k for k in KINDS if k != "phone")
# A phone's shape in what the shaped kinds left: as in the pre-check, on normalised text.
_PHONE_GATE = re.compile(rf"[0-9](?:{_P}{{0,4}}[0-9]){{6}}|\+{_P}?[0-9]")
# A run of digits, '+' and phone punctuation: where a phone number can be, whole.
_RUN = re.compile(f"[0-9+{_PUNCT}]*[0-9][0-9+{_PUNCT}]*")
_DATE_RUN = re.compile(
    r"[ \t]*\(?(?:(?:19|20)\d\d([-/.])\d{1,2}\1\d{1,2}|\d{1,2}([-/.])\d{1,2}\2(?:19|20)?\d\d)(?:[ T]\d{1,2})?[ \t]*"
)
_SPACES = " \t\u00a0\u3000"
_CONTEXT = 4  # characters either side of a run the matcher sees: "No. ", a letter, ":MM" after a time
# Written dates and year-led numbers are no phone numbers, whatever a region's plan allows.
_DATEISH = re.compile(
    r"\(?(?:[0-3]?\d[./\-][01]?\d[./\-](?:19|20)?\d\d|(?:19|20)\d\d(?:[./\- ]|$)|(?:20\d\d)(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))"
)
_DECIMAL = re.compile(r"\d+[.,]\d+$")
# Right before a number: a number sign ("#942477885", "No. 745404910") or a decimal point or
# thousands separator after a digit (the fraction of "531.6083848687").
_NUMBER_SIGN = re.compile(r"(?:[#№]|\bNo\.?) ?$|\d[.,]$", re.IGNORECASE)
_FILL = "\x00"  # stands in for a span already found: no digit, letter or phone punctuation
_CACHE_MAX = 1 << 16


@functools.cache
def _types() -> tuple[frozenset[int], frozenset[int]]:
    from phonenumbers import PhoneNumberType as T

    return (frozenset({T.MOBILE, T.FIXED_LINE_OR_MOBILE, T.PERSONAL_NUMBER}),
            frozenset({T.PAGER, T.VOICEMAIL, T.UNKNOWN, T.PREMIUM_RATE, T.SHARED_COST}))


@functools.cache
def _digit_table() -> dict[int, int]:
    """Every Unicode decimal digit -> its ASCII digit (one character for one, so offsets hold)."""
    return {ord(c): 48 + unicodedata.digit(c) for c in re.findall(r"\d", every_char()) if not c.isascii()}


@functools.lru_cache(maxsize=1 << 16)
def _nfkc(c: str) -> str:
    return unicodedata.normalize("NFKC", c)


def _normalise(text: str) -> tuple[str, list[int] | None]:
    """(the text NFKC-normalised character by character, with ASCII digits; the index in
    `text` of each of its characters, None when that is the identity). Character by character
    so every character of the result comes from one of the original."""
    if text.isascii():
        return text, None
    parts = [c if c.isascii() else _nfkc(c) for c in text]
    norm = "".join(parts).translate(_digit_table())
    if len(norm) == len(text):
        return norm, None
    where: list[int] = []
    for i, n in enumerate(parts):
        where.extend([i] * len(n))
    return norm, where


def id_card_ok(s: str) -> bool:
    """CN resident ID: GB 11643 checksum, birth date and place (python-stdnum)."""
    from stdnum.cn import ric

    return ric.is_valid(s)


def luhn_ok(digits: str) -> bool:
    from stdnum import luhn

    return digits.isdigit() and luhn.is_valid(digits)


# Issuer prefixes of the card networks (Visa 4; Mastercard 51-55, 2221-2720; Mir 2200-2204; Amex
# 34/37; Diners 300-305, 36, 38-39; JCB 3528-3589; Discover, UnionPay, Maestro 50-69): a
# date-led order number "2024100412345678" passes Luhn one time in ten but starts with none.
_IIN = re.compile(r"4|5|6|3(?:0[0-5]|[4689]|7|5(?:2[89]|[3-8]))|2(?:20[0-4]|2(?:2[1-9]|[3-9])|[3-6]|7(?:[01]|20))")


def card_ok(digits: str) -> bool:
    """A bank card number: 13-19 digits, a network's issuer prefix and a valid Luhn sum."""
    return 13 <= len(digits) <= 19 and _IIN.match(digits) is not None and luhn_ok(digits)


def _id_ok(s: str) -> bool:
    """One of the national ID shapes of `_PATTERNS["id_card"]`, by its python-stdnum module."""
    compact = re.sub(r"[ .\-]", "", s)
    n = len(compact)
    if n == 18:
        return id_card_ok(compact)
    if n == 16:
        from stdnum.it import codicefiscale

        return codicefiscale.is_valid(compact)
    if compact[-1].isalpha():
        from stdnum.es import dni

        return dni.is_valid(compact)
    if "." in s:
        from stdnum.br import cpf

        return cpf.is_valid(compact)
    if n == 9:
        from stdnum.us import ssn

        return ssn.is_valid(compact)
    if n == 13:
        from stdnum.kr import rrn

        return rrn.is_valid(compact)
    if n == 15:
        from stdnum.fr import nir

        return nir.is_valid(compact)
    if n == 12:
        from stdnum.in_ import aadhaar
        from stdnum.jp import in_ as mynumber

        return aadhaar.is_valid(compact) or mynumber.is_valid(compact)
    return False


def _iban_prefix(s: str) -> str | None:
    """The longest valid IBAN `s` starts with, cut at a group boundary (the regex may take a
    word after it as a last group)."""
    from stdnum import iban

    groups = s.split(" ")
    while groups:
        candidate = " ".join(groups)
        if len(candidate.replace(" ", "")) >= 15 and iban.is_valid(candidate):
            return candidate
        groups.pop()
    return None


def _ipv6_ok(s: str) -> bool:
    if sum(1 for g in s.split(":") if g) < 2:  # "e::" is valid IPv6 but far likelier prose
        return False
    # "12:30:45" (a time) has too few groups and no "::": ipaddress rejects it.
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def _phone_ok(text: str, start: int, raw: str, region: str) -> bool:
    """A VALID match of the matcher (at `start` in `text`) that is also written like a phone
    number: with '+' or an international prefix; or nationally, with 7+ digits, not starting
    with the country code (the matcher strips it: '49821418016' in DE), not a date, a decimal,
    or led by a year, not after '#' or a decimal point (an order number, a fraction), and, when
    it is one unbroken run of digits, a number a mobile can have (an epoch time '1646007028' is
    a valid landline in BR; people write landlines with their area code set apart)."""
    import phonenumbers

    if raw.startswith("+"):
        return True
    try:
        num = phonenumbers.parse(raw, region, keep_raw_input=True)
    except phonenumbers.NumberParseException:
        return False
    src = num.country_code_source
    if src == phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_IDD:
        return True
    if src != phonenumbers.CountryCodeSource.FROM_DEFAULT_COUNTRY:
        return False
    if sum(c.isdigit() for c in raw) < 7 or _DATEISH.match(raw) or _DECIMAL.match(raw):
        return False
    if _NUMBER_SIGN.search(text, 0, start):
        return False
    kind = phonenumbers.number_type(num)
    if raw.isdigit():
        return kind in _types()[0]
    return kind not in _types()[1]


def _possible_international(run: str) -> bool:
    """'+' and a country code, with a length that country's numbers can have: a phone number by
    its shape even where libphonenumber does not know the range as assigned (ranges newer than its
    metadata, numbers set aside for fiction): a false positive here costs a number in a chat log."""
    import phonenumbers

    try:
        num = phonenumbers.parse(run, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_possible_number(num) and len(phonenumbers.national_significant_number(num)) >= 7


class Redactor:
    """Applies the per-kind action ('redact' | 'drop' | 'keep') of `make_dataset.pii`."""

    def __init__(self, actions: Mapping[str, Any] | object):
        get = actions.get if isinstance(actions, Mapping) else functools.partial(getattr, actions)
        self.actions = {k: get(k, "redact") for k in KINDS}
        self.regions = tuple(get("phone_regions", DEFAULT_REGIONS))
        active = [k for k in _REGEX_KINDS if self.actions[k] != "keep"]
        self._re = re.compile("|".join(f"(?P<{k}>{_PATTERNS[k]})" for k in active)) if active else None
        self._phone = self.actions["phone"] != "keep" and bool(self.regions)
        self._any = self._re is not None or self._phone
        self._phone_cache: dict[str, list[tuple[int, int]]] = {}
        # "Could this text hold anything?" for hot loops; None when every kind is kept.
        self.maybe = _PRECHECK.search if self._any else None
        self.re2_pattern = _re2(_PRECHECK_SRC)

    # -- which texts to look at ------------------------------------------------------------
    def candidates(self, texts: Sequence[str]) -> list[int]:
        r"""The indices (ascending) of the texts `maybe` is truthy for, i.e.
        `[i for i, t in enumerate(texts) if self.maybe(t)]`, without a regex call per text.

        numpy flags every text that could hold a `_PRECHECK` match by looser tests, each
        reading only characters its alternative's match consumes; the few flagged texts then
        get the real `_PRECHECK.search`:
          7 digits ...                 the text holds 7 digits at all
          [+＋﹢]P?\d                   a plus sign followed by a digit or phone punctuation
          [@＠﹫]                        any of them
          \d[.．]\d, [.．｡]letter        a dot followed by a digit or a letter
          :(?::|hex{1,4}:|//)          a colon followed by a colon, a hex digit or '/'
          letter{6}\d\d                a letter followed by a digit
        The "\x00" between two texts is none of those characters, so a match inside a text is
        flagged at a position inside that text (one spanning a boundary is a false alarm)."""
        if not self._any or not texts:
            return []
        import numpy as np

        codes, ends = joined_code_points(texts)
        cls = lookup(_precheck_classes(), codes, _PAD)
        digit = (cls & _DIGIT) != 0
        # digits per text: a running count read at each text's end
        running = np.cumsum(digit, dtype=np.int64)
        bounds = np.r_[ends, len(codes) - 1] if len(codes) else np.zeros(1, np.int64)
        upto = np.r_[0, running[bounds]]
        many = np.flatnonzero(np.diff(upto) >= 7)
        after = np.r_[cls[1:], 0].astype(np.uint8)
        ok = ((cls & _PLUS) != 0) & ((after & (_DIGIT | _PUNCT_FLAG)) != 0)
        ok |= (cls & _AT) != 0
        ok |= ((cls & _DOT) != 0) & ((after & (_DIGIT | _LETTER_FLAG)) != 0)
        ok |= ((cls & _COLON) != 0) & ((after & (_COLON | _HEX | _SLASH)) != 0)
        ok |= ((cls & _LETTER_FLAG) != 0) & ((after & _DIGIT) != 0)
        flagged = np.unique(np.r_[np.searchsorted(ends, np.flatnonzero(ok)), many])
        search = _PRECHECK.search
        return [i for i in flagged.tolist() if i < len(texts) and search(texts[i])]

    # -- redaction ---------------------------------------------------------------------------
    def apply(self, text: str) -> tuple[str | None, dict[str, int]]:
        """Return (new text, or None when a 'drop' kind was found; counts per kind found)."""
        if not self._any or not _PRECHECK.search(text):
            return text, {}
        spans = self._find(text)
        if not spans:
            return text, {}
        counts: dict[str, int] = {}
        for _, _, kind in spans:
            counts[kind] = counts.get(kind, 0) + 1
        if any(self.actions[k] == "drop" for k in counts):
            return None, counts
        return _replace(text, spans), counts

    def redact(self, text: str) -> str:
        """`text` with every kind that is not kept replaced, 'drop' kinds too: for names and
        the other places a whole message cannot be dropped (blocked-word hits, judge prompts)."""
        if not self._any or not text or not _PRECHECK.search(text):
            return text
        spans = self._find(text)
        return _replace(text, spans) if spans else text

    def redact_turns(self, turns: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """A sample's turns with `redact` applied to each content and name."""
        out = []
        for t in turns:
            d = dict(t)
            d["content"] = self.redact(str(t.get("content", "")))
            if d.get("name"):
                d["name"] = self.redact(str(d["name"]))
            out.append(d)
        return out

    def _find(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, kind) in `text`, sorted, not overlapping."""
        norm, where = _normalise(text)
        found: list[tuple[int, int, str]] = []
        if self._re is not None:
            for m in self._re.finditer(norm):
                hit = self._check(m)
                if hit is not None:
                    found.append(hit)
        if self._phone:
            residual = norm
            if found:
                parts, at = [], 0
                for a, b, _ in found:
                    parts += [norm[at:a], _FILL * (b - a)]
                    at = b
                residual = "".join(parts) + norm[at:]
            if _PHONE_GATE.search(residual):
                found.extend((a, b, "phone") for a, b in self._phones(residual))
                found.sort()
        if where is not None and found:
            found = [(where[a], where[b - 1] + 1, k) for a, b, k in found]
        return found

    def _check(self, m: re.Match[str]) -> tuple[int, int, str] | None:
        kind = m.lastgroup or ""
        s = m.group(kind)
        a, b = m.span(kind)
        if kind == "url":
            # Sentence punctuation right after a link is not part of it.
            return a, a + len(s.rstrip(".,;:!?)]}'\"")), "url"
        if kind == "ip" and ":" in s and not _ipv6_ok(s):
            return None
        if kind == "id_card" and not _id_ok(s):
            # A long digit run with a bad ID check may still be a bank card.
            digits = s.replace(" ", "").replace("-", "")
            if self.actions["bank_card"] != "keep" and card_ok(digits):
                return a, b, "bank_card"
            return None
        if kind == "iban":
            ok = _iban_prefix(s)
            return None if ok is None else (a, a + len(ok), "iban")
        if kind == "bank_card" and not card_ok(s.replace(" ", "").replace("-", "")):
            return None
        return a, b, kind

    def _phones(self, text: str) -> list[tuple[int, int]]:
        """Spans of phone numbers in any of the regions, overlapping ones merged.

        The matcher runs on each run of digits and phone punctuation with a phone's shape, with
        a few characters around it (what the matcher and `_phone_ok` look at beside a number),
        not on the whole text: the same number or date in another message is then a cache hit,
        and written dates never get to it at all."""
        spans = []
        for m in _RUN.finditer(text):
            run = m.group()
            if not _PHONE_GATE.search(run) or _DATE_RUN.fullmatch(run):
                continue
            digits = run.strip(_SPACES)
            if digits.isdigit() and _DATEISH.match(digits):
                continue  # one run of digits is matched whole or not at all, and _phone_ok refuses this
            a = max(0, m.start() - _CONTEXT)
            lo = m.start() + run.index(digits[0]) - a
            spans.extend((a + s, a + e) for s, e in self._window(text[a:m.end() + _CONTEXT], lo, lo + len(digits)))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        return merged

    def _window(self, text: str, lo: int, hi: int) -> list[tuple[int, int]]:
        """Phone numbers in `text`, a run at [lo, hi) and its context. The regions are tried in
        the configured order until one number spans the whole run: no region can add to that."""
        got = self._phone_cache.get(text)
        if got is not None:
            return got
        from phonenumbers import Leniency, PhoneNumberMatcher

        found: list[tuple[int, int]] = []
        for region in self.regions:
            for m in PhoneNumberMatcher(text, region, leniency=Leniency.VALID):
                if _phone_ok(text, m.start, m.raw_string, region):
                    found.append((m.start, m.end))
            if any(s <= lo and e >= hi for s, e in found):
                break
        else:
            # The run without the punctuation around it: '(' and ')' or '.' stay in the text.
            run = text[lo:hi]
            start = lo + next(i for i, c in enumerate(run) if c == "+" or c.isdigit())
            end = lo + max(i for i, c in enumerate(run) if c.isdigit()) + 1
            if text[start] == "+" and _possible_international(text[start:end]):
                found.append((start, end))
        if len(self._phone_cache) >= _CACHE_MAX:
            self._phone_cache.clear()
        self._phone_cache[text] = found
        return found


def _replace(text: str, spans: list[tuple[int, int, str]]) -> str:
    out, at = [], 0
    for a, b, kind in spans:
        out += [text[at:a], PLACEHOLDERS[kind]]
        at = b
    out.append(text[at:])
    return "".join(out)


# -- the numpy form of the pre-check -----------------------------------------------------------
# Character classes of `_PRECHECK`, one bit each, one byte per code point.
_DIGIT, _HEX, _LETTER_FLAG, _PUNCT_FLAG, _PLUS, _AT, _DOT, _COLON = 1, 2, 4, 8, 16, 32, 64, 128
_SLASH = _PUNCT_FLAG  # '/' is phone punctuation: "://" is flagged through it
_PAD = 8


@functools.cache
def _precheck_classes() -> NDArray[np.uint8]:
    import numpy as np

    table = np.zeros(0x110000, np.uint8)
    chars = every_char()
    for pattern, flag in ((r"\d", _DIGIT), (r"[0-9A-Fa-f]", _HEX), (_LETTER, _LETTER_FLAG), (_P, _PUNCT_FLAG),
                          ("[+\uff0b\ufe62]", _PLUS), ("[@\uff20\ufe6b]", _AT), ("[.\uff0e\uff61]", _DOT), (":", _COLON)):
        table[[ord(c) for c in re.findall(pattern, chars)]] |= flag
    return table
