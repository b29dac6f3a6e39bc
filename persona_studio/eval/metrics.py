"""Metrics on reply sets: reference overlap and style distance against the real person.

Reference overlap compares each generated reply with the real reply to the same history:
BLEU and chrF from sacrebleu (the 'zh' tokenizer when the references contain Chinese, which
splits CJK characters and tokenizes the rest like '13a'), ROUGE-L from rouge-score with a
tokenizer that keeps CJK characters one by one (its default drops everything but [a-z0-9]).

Style distance compares the two reply *sets* as a whole, feature by feature; each distance is in
[0, 1] (0 = same habit), and `style_distance` is their mean.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

import regex

_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
_TOKENS = regex.compile(rf"[{_CJK}]|[^\W_{_CJK}]+", regex.UNICODE)
_HAS_CJK = regex.compile(rf"[{_CJK}]")
_LATIN = regex.compile(r"\p{Latin}")
_EMOJI = regex.compile(r"\p{Extended_Pictographic}")
# Punctuation and symbols people type as habits: ASCII and full-width marks, ellipses, tildes.
_PUNCT = regex.compile(r"[\p{P}~～^]")


def tokens(text: str) -> list[str]:
    """Lower-cased words for alphabetic scripts, single characters for CJK."""
    return _TOKENS.findall(text.lower())


def has_cjk(texts: Sequence[str]) -> bool:
    return any(_HAS_CJK.search(t) for t in texts)


class _RougeTokenizer:
    """The `tokenize(text)` object rouge-score accepts in place of its ASCII-only default."""

    def tokenize(self, text: str) -> list[str]:
        return tokens(text)


# -- reference overlap ----------------------------------------------------------------------------
def reference_scores(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, Any]:
    """Corpus BLEU and chrF (0-100) and mean ROUGE-L F1 (0-100) of `hyps` against `refs`."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} replies for {len(refs)} references")
    if not refs:
        return {"bleu": None, "chrf": None, "rouge_l": None, "bleu_tokenizer": None}
    tok = "zh" if has_cjk(refs) else "13a"
    bleu = sacrebleu.corpus_bleu(list(hyps), [list(refs)], tokenize=tok)
    chrf = sacrebleu.corpus_chrf(list(hyps), [list(refs)])
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_RougeTokenizer())
    rouge = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs, strict=True)]
    return {
        "bleu": round(bleu.score, 4),
        "chrf": round(chrf.score, 4),
        "rouge_l": round(100 * statistics.fmean(rouge), 4),
        "bleu_tokenizer": tok,
    }


# -- style --------------------------------------------------------------------------------------
def style_profile(replies: Sequence[str]) -> dict[str, Any]:
    """Habits of one set of replies (all shares are of replies unless named per character)."""
    n = len(replies)
    if n == 0:
        return {"n": 0}
    lengths = [len(r) for r in replies]
    chars = sum(lengths)
    punct: Counter[str] = Counter()
    for r in replies:
        punct.update(_PUNCT.findall(r))
    cjk = sum(len(_HAS_CJK.findall(r)) for r in replies)
    latin = sum(len(_LATIN.findall(r)) for r in replies)
    stripped = [r.rstrip() for r in replies]
    return {
        "n": n,
        "length_mean": statistics.fmean(lengths),
        "length_median": statistics.median(lengths),
        "emoji_per_reply": sum(len(_EMOJI.findall(r)) for r in replies) / n,
        "emoji_share": sum(1 for r in replies if _EMOJI.search(r)) / n,
        "punct_per_char": sum(punct.values()) / chars if chars else 0.0,
        "end_punct_share": sum(1 for r in stripped if r and _PUNCT.fullmatch(r[-1])) / n,
        "punct_marks": dict(punct.most_common()),
        "multiline_share": sum(1 for r in replies if "\n" in r.strip()) / n,
        "lines_per_reply": statistics.fmean(len([x for x in r.split("\n") if x.strip()]) or 1 for r in replies),
        "cjk_share": cjk / (cjk + latin) if cjk + latin else 0.0,
    }


def _w1(a: Sequence[float], b: Sequence[float]) -> float:
    """1-D Wasserstein distance of two empirical distributions (mean gap between their quantiles)."""
    qs = [i / 100 for i in range(101)]

    def quantile(xs: list[float], q: float) -> float:
        pos = q * (len(xs) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    sa, sb = sorted(a), sorted(b)
    return statistics.fmean(abs(quantile(sa, q) - quantile(sb, q)) for q in qs)


def _tv(p: dict[str, int], q: dict[str, int]) -> float:
    """Total-variation distance of two count tables (0 when both are empty)."""
    tp, tq = sum(p.values()), sum(q.values())
    if not tp and not tq:
        return 0.0
    if not tp or not tq:
        return 1.0
    return 0.5 * sum(abs(p.get(k, 0) / tp - q.get(k, 0) / tq) for k in set(p) | set(q))


def catchphrases(real: Sequence[str], background: Sequence[str] = (), top: int = 20) -> list[str]:
    """Phrases (2-4 tokens) the person uses again and again, and clearly more than `background`.

    A phrase counts once per reply; it needs at least two replies (and 3% of them), and a share
    of replies at least twice its share in the background texts (the other side of the chats).
    """
    def grams(text: str) -> set[str]:
        toks = tokens(text)
        sep = lambda g: "" if all(_HAS_CJK.match(t) for t in g) else " "  # noqa: E731
        return {sep(toks[i:i + n]).join(toks[i:i + n]) for n in (2, 3, 4) for i in range(len(toks) - n + 1)}

    if not real:
        return []
    df: Counter[str] = Counter()
    for r in real:
        df.update(grams(r))
    bg: Counter[str] = Counter()
    for b in background:
        bg.update(grams(b))
    need = max(2, math.ceil(0.03 * len(real)))
    scored = []
    for g, c in df.items():
        if c < need:
            continue
        share = c / len(real)
        bg_share = bg[g] / len(background) if background else 0.0
        if share >= 2 * bg_share:
            scored.append((-c, -len(g), g))
    phrases: list[str] = []
    for _, _, g in sorted(scored):
        if not any(g in longer for longer in phrases):  # "see you" adds nothing beside "see you soon"
            phrases.append(g)
        if len(phrases) == top:
            break
    return phrases


def phrase_recall(phrases: Sequence[str], replies: Sequence[str]) -> float | None:
    """Share of `phrases` that occur in at least one reply (None when there are no phrases)."""
    if not phrases:
        return None
    joined = [" ".join(tokens(r)) for r in replies]
    cjk_joined = ["".join(tokens(r)) for r in replies]
    hit = sum(1 for p in phrases if any(p in j for j in (joined if " " in p else cjk_joined + joined)))
    return hit / len(phrases)


def style_distance(generated: Sequence[str], real: Sequence[str], phrases: Sequence[str] = ()) -> dict[str, Any]:
    """Each habit's distance in [0, 1] between generated and real replies, and their mean."""
    g, r = style_profile(generated), style_profile(real)
    if not g["n"] or not r["n"]:
        return {"style_distance": None, "parts": {}, "generated": g, "real": r}
    parts = {
        "length": min(1.0, _w1([len(x) for x in generated], [len(x) for x in real]) / max(r["length_mean"], 1.0)),
        "emoji": abs(g["emoji_share"] - r["emoji_share"]),
        "punctuation": 0.5 * _tv(g["punct_marks"], r["punct_marks"])
        + 0.5 * abs(g["end_punct_share"] - r["end_punct_share"]),
        "multiline": abs(g["multiline_share"] - r["multiline_share"]),
        "script": abs(g["cjk_share"] - r["cjk_share"]),
    }
    recall = phrase_recall(phrases, generated)
    if recall is not None:
        parts["phrases"] = 1.0 - recall
    parts = {k: round(v, 4) for k, v in parts.items()}
    return {
        "style_distance": round(statistics.fmean(parts.values()), 4),
        "parts": parts,
        "phrase_recall": recall,
        "generated": g,
        "real": r,
    }
