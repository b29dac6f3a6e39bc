"""Batch checks: `BlockedWords.find_many` and `Redactor.candidates` return exactly the indices
the per-text `search` / `maybe` would, for any column of texts."""

from __future__ import annotations

import random

import pytest

from persona_studio.clean import pii, textscan
from persona_studio.clean.blocked import BlockedWords
from persona_studio.clean.pii import KINDS, Redactor

# Pieces of chat text. Several exist to be glued to a neighbour (in the same text, where they
# make a match, or across two texts, where they must not): "138" + "1234", "pass" + "word".
VOCAB = [
    "你好呀", "今天好累啊", "这个价格是199元", "明天下午3点开会", "2024年的计划", "我们有12个人",
    "ok see you at 7", "Did you finish the report?", "lol", "a", "com", "x", "y", " ", "\n",
    "13812345678", "138", "1234", "13", "812345678", "+1 415 555 2671", "+", "86", "1", "5",
    "zhang.san@example.com", "@", "https://example.com/a?b=1", "www.qq.com", ".", ":", "::",
    "192.168.1.10", "fe80::1ff:fe23:4567:890a", "12:30", "12:30:45", "3.5", "v2.0.1", "1.", ".2",
    "ab:", "cd:", "4111 1111 1111 1111", "010-12345678", "(415) 555-2671", "138 1234 5678",
    "PassWord", "PASSWORD", "password", "pass", "word", "密码", "密", "码", "违禁", "违", "禁",
    "wifi密码是多少", "ıstanbul", "İSTANBUL", "istanbul", "straße", "STRAẞE", "ſtraße", "ß",
    "\u212aiss", "kiss", "KISS", "e\u0301", "\u0301", "😀", "𝟏𝟐𝟑𝟒𝟓𝟔𝟕", "１３８１２３４５６７８",
    "٠١٢٣٤٥٦٧", "\ud800", "\udfff", "\x00", "", "Σίσυφος", "ΣΊΣΥΦΟΣ", "ς",
]
WORDS = ["密码", "password", "违禁", "istanbul", "straße", "kiss", "σίσυφος", "禁", "ß", "ab", "Pass Word"]


def texts_from(rng: random.Random, n: int, vocab: list[str]) -> list[str]:
    return ["".join(rng.choice(vocab) for _ in range(rng.randint(0, 4))) for _ in range(n)]


def loop(check: object, texts: list[str]) -> list[int]:
    assert callable(check)
    return [i for i, t in enumerate(texts) if check(t)]


def assert_same(words: BlockedWords, redactor: Redactor, texts: list[str]) -> None:
    assert words.find_many(texts) == (loop(words.search, texts) if words.search else [])
    assert redactor.candidates(texts) == (loop(redactor.maybe, texts) if redactor.maybe else [])


@pytest.mark.parametrize(
    ("seed", "vocab"),
    [
        (1, VOCAB),
        # no character beyond the BMP (and no "\x00"): the UTF-16 path with separator boundaries
        (2, [v for v in VOCAB if all(ord(c) < 0x10000 for c in v) and "\x00" not in v]),
        (3, [v for v in VOCAB if "\x00" not in v]),
    ],
)
def test_batch_equals_per_text_on_random_columns(seed: int, vocab: list[str]) -> None:
    rng = random.Random(seed)
    texts = texts_from(rng, 3000, vocab)
    words, redactor = BlockedWords(WORDS), Redactor({})
    assert_same(words, redactor, texts)
    assert 0 < len(words.find_many(texts)) < len(texts)  # the column exercises both answers
    assert 0 < len(redactor.candidates(texts)) < len(texts)
    for _ in range(200):  # short windows: every text is at a column's start or end somewhere
        i = rng.randrange(len(texts))
        assert_same(words, redactor, texts[i:i + rng.randint(0, 5)])


def test_batch_equals_per_text_for_random_word_lists() -> None:
    rng = random.Random(4)
    texts = texts_from(rng, 2000, VOCAB)
    pieces = [v for v in VOCAB if v.strip()] + ["p", "P", "K", "s", "密码是", "ss", "\x00x"]
    for _ in range(20):
        words = BlockedWords(rng.sample(pieces, rng.randint(1, 30)))
        assert words.find_many(texts) == loop(words.search, texts)


def test_pieces_of_a_match_in_neighbouring_texts_do_not_count() -> None:
    r, w = Redactor({}), BlockedWords(["password", "密码", "禁"])
    pairs = [
        ("call 138", "1234 ok"),  # 7 digits only together
        ("13", "812345"),
        ("x 13", "8 1234"),  # 3+4 digits with a separator
        ("3", ".5"),  # \d\.\d
        ("3.", "5"),
        ("+", "86 138"),  # +\d
        ("ab:", ":1"),  # ::
        ("x:1f", ":y"),  # :hex:
        ("x.", "com"),  # \.[A-Za-z]
        ("pass", "word"),
        ("密", "码"),
    ]
    for left, right in pairs:
        assert r.candidates([left, right]) == loop(r.maybe, [left, right]) == []
        assert w.find_many([left, right]) == loop(w.search, [left, right]) == []
    # ...but each half that matches alone still does
    assert r.candidates(["13", "812345678"]) == [1]
    assert r.candidates(["13812345678", "1"]) == [0]
    assert w.find_many(["pass", "密码word", "x"]) == [1]


def test_matches_exactly_at_text_edges() -> None:
    r, w = Redactor({}), BlockedWords(["password", "密码", "禁", "x"])
    # first and last character of the column, of a text, and of one-character texts
    texts = ["13812345678", "@", "a", ".com", "1.5", "ab::1", "+1", "", "xx", "密码", "a密码", "密码a", "禁", "@"]
    assert r.candidates(texts) == loop(r.maybe, texts) == [0, 1, 3, 4, 5, 6, 13]
    assert w.find_many(texts) == loop(w.search, texts) == [8, 9, 10, 11, 12]
    # a word's first character as the very last character of the column
    assert BlockedWords(["password"]).find_many(["ok", "p"]) == []
    assert BlockedWords(["p"]).find_many(["ok", "p"]) == [1]
    assert BlockedWords(["p"]).find_many(["P"]) == [0]
    # a '.' as the column's first character: the digit "before" it is no character at all
    assert r.candidates([".5", "1"]) == []
    assert r.candidates(["1", ".5"]) == []


def test_texts_holding_the_separator() -> None:
    r, w = Redactor({}), BlockedWords(["password", "密码"])
    texts = ["a\x00b", "13812345678", "密\x00码", "x\x00", "\x00", "pass\x00word", "ok", "密码\x00", "1\x00.5"]
    assert_same(w, r, texts)
    assert r.candidates(texts) == [1]
    assert w.find_many(texts) == [7]
    # a word that holds "\x00" matches inside one text, never across two
    odd = BlockedWords(["a\x00b"])
    assert odd.find_many(["xa", "by"]) == []
    assert odd.find_many(["xa", "by", "qa\x00bq"]) == [2]


def test_case_variants_the_regex_accepts() -> None:
    # the regex's own case rules, not str.lower(): Kelvin sign, long s, dotted/dotless i, ẞ
    w = BlockedWords(["kiss", "istanbul", "straße", "Σίσυφος"])
    texts = ["\u212aiſſ", "İstanbul", "ıSTANBUL", "STRAẞE", "strasse", "σίσυφοσ", "ΣΊΣΥΦΟς", "kis"]
    assert w.find_many(texts) == loop(w.search, texts)
    assert w.find_many(texts)[:3] == [0, 1, 2]
    assert 4 not in w.find_many(texts)  # ß is one character; 'ss' is two


def test_unicode_digits_count_as_digits() -> None:
    # \d is any Unicode decimal digit: fullwidth, Arabic-Indic, mathematical bold (beyond the BMP)
    r = Redactor({})
    texts = ["１３８１２３４５６７８", "٠١٢٣٤٥٦٧", "𝟏𝟐𝟑𝟒𝟓𝟔𝟕", "𝟏.𝟐", "１２３", "😀 138"]
    assert r.candidates(texts) == loop(r.maybe, texts) == [0, 1, 2, 3]


def test_empty_inputs_and_nothing_configured() -> None:
    r, w = Redactor({}), BlockedWords(["密码"])
    for texts in ([], [""], ["", ""], ["", "密码", ""]):
        assert_same(w, r, texts)
    assert BlockedWords([]).find_many(["密码", "password"]) == []
    everything_kept = Redactor({k: "keep" for k in KINDS})
    assert everything_kept.maybe is None
    assert everything_kept.candidates(["13812345678", "x@y.com"]) == []
    # the empty word matches every text, the empty one too
    assert BlockedWords(["", "x"]).find_many(["", "a", ""]) == [0, 1, 2]


def test_numpy_filter_was_written_for_this_precheck() -> None:
    # `candidates` flags positions by re-reading each alternative of _PRECHECK; a changed
    # pattern needs a changed filter (and its proof) first.
    assert pii._PRECHECK.pattern == (
        pii._PRECHECK_SRC
    ) == rf"\d(?:{pii._P}{{0,4}}\d){{6}}|[+\uff0b\ufe62]{pii._P}?\d|[@\uff20\ufe6b]|\d[.\uff0e]\d" \
        r"|:(?::|[0-9A-Fa-f]{1,4}:|//)|[.\uff0e\uff61][^\W\d_]|[A-Za-z]{6}\d\d"
    assert pii._PRECHECK.flags == pii.re.UNICODE


def test_columns_longer_than_one_lookup_slice() -> None:
    import numpy as np

    codes = np.random.default_rng(5).integers(0, 0x110000, (1 << 18) * 2 + 5).astype("<u4")
    table = np.arange(0x110000, dtype=np.uint32) * 7
    out = textscan.lookup(table, codes, 3)
    assert (out[:-3] == table[codes]).all() and (out[-3:] == 0).all()
    texts = texts_from(random.Random(6), 40_000, VOCAB)  # ~400k characters: two slices and a bit
    assert_same(BlockedWords(WORDS), Redactor({}), texts)
