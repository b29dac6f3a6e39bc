"""Eval metrics on hand-written reply sets whose values are known."""

from __future__ import annotations

import pytest

from persona_studio.eval import metrics
from persona_studio.eval.heldout import held_out_ids, place


def test_style_profile_counts_lengths_emoji_punctuation_lines_and_script() -> None:
    replies = ["ok!", "好的😀", "see you\nbye", "哈哈哈"]
    p = metrics.style_profile(replies)
    assert p["n"] == 4
    assert p["length_mean"] == pytest.approx((3 + 3 + 11 + 3) / 4)
    assert p["length_median"] == 3
    assert p["emoji_per_reply"] == pytest.approx(1 / 4) and p["emoji_share"] == pytest.approx(1 / 4)
    assert p["punct_marks"] == {"!": 1}
    assert p["punct_per_char"] == pytest.approx(1 / 20)
    assert p["end_punct_share"] == pytest.approx(1 / 4)
    assert p["multiline_share"] == pytest.approx(1 / 4) and p["lines_per_reply"] == pytest.approx(5 / 4)
    # CJK 好的哈哈哈 = 5 letters, Latin okseeyoubye = 11
    assert p["cjk_share"] == pytest.approx(5 / 16)


def test_full_width_punctuation_and_tilde_are_habits_too() -> None:
    p = metrics.style_profile(["好的～", "嗯。。。", "what?"])
    assert p["punct_marks"] == {"。": 3, "～": 1, "?": 1}
    assert p["end_punct_share"] == 1.0


def test_identical_sets_have_zero_style_distance_and_different_ones_do_not() -> None:
    real = ["哈哈哈好的～", "明天见！", "吃了吗\n在哪", "😂😂"]
    same = metrics.style_distance(real, real, metrics.catchphrases(real))
    assert same["style_distance"] == 0.0 and set(same["parts"].values()) == {0.0}
    other = ["I would be glad to help you with that request today.", "Certainly. Here is a detailed answer."]
    far = metrics.style_distance(other, real)
    parts = far["parts"]
    assert parts["script"] == 1.0  # all Latin vs all CJK
    assert parts["emoji"] == pytest.approx(0.25)
    assert parts["multiline"] == pytest.approx(0.25)
    assert 0.5 < parts["length"] <= 1.0
    assert far["style_distance"] == pytest.approx(sum(parts.values()) / len(parts))


def test_catchphrases_are_repeated_and_more_frequent_than_in_the_background() -> None:
    real = ["no worries mate", "sure, no worries mate", "no worries mate see you", "ok then", "see you"]
    background = ["see you", "see you later", "thanks mate"]
    phrases = metrics.catchphrases(real, background)
    assert phrases == ["no worries mate"]  # "see you" is as common on the other side
    assert metrics.phrase_recall(phrases, ["ah no worries mate!"]) == 1.0
    assert metrics.phrase_recall(phrases, ["fine"]) == 0.0
    zh = metrics.catchphrases(["笑死我了哈哈", "真的笑死我了", "笑死我了"], ["你好"])
    assert zh[0] == "笑死我了"
    assert metrics.phrase_recall(zh, ["哈哈笑死我了"]) == 1.0


def test_reference_scores_perfect_partial_and_zero() -> None:
    refs = ["the tea is ready", "see you tomorrow at noon"]
    perfect = metrics.reference_scores(refs, refs)
    assert perfect["bleu"] == pytest.approx(100) and perfect["chrf"] == pytest.approx(100)
    assert perfect["rouge_l"] == pytest.approx(100) and perfect["bleu_tokenizer"] == "13a"
    partial = metrics.reference_scores(["the tea is cold", "see you at noon"], refs)
    zero = metrics.reference_scores(["xyz", "qqq"], refs)
    for k in ("bleu", "chrf", "rouge_l"):
        assert 0 <= zero[k] < partial[k] < perfect[k]
    # ROUGE-L F1: LCS 3 of 4 tokens both ways (0.75); then P 4/4, R 4/5 (F1 = 2 * 0.8 / 1.8)
    assert partial["rouge_l"] == pytest.approx(100 * (0.75 + 2 * 0.8 / 1.8) / 2, abs=1e-3)


def test_chinese_is_scored_by_character() -> None:
    refs = ["我今天很开心"]
    s = metrics.reference_scores(["我今天不开心"], refs)
    assert s["bleu_tokenizer"] == "zh"
    assert s["rouge_l"] == pytest.approx(100 * 5 / 6)  # 5 of 6 characters in common, in order
    assert s["bleu"] > 0 and s["chrf"] > 0


def test_heldout_rule_is_per_conversation_and_tops_up_to_the_minimum() -> None:
    samples = [{"turns": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
               for i in range(100)]
    assert place(samples[0]["turns"], 0) == place(list(samples[0]["turns"]), 0)
    assert place(samples[0]["turns"], 0) != place(samples[0]["turns"], 1)
    by_frac = held_out_ids(samples, 0.3, 0, seed=0)
    assert by_frac == {i for i, s in enumerate(samples) if place(s["turns"], 0) < 0.3}
    # adding conversations never moves one of the old ones in or out (fraction rule)
    more = samples + [{"turns": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}]
    assert {i for i in held_out_ids(more, 0.3, 0, 0) if i < 100} == by_frac
    assert len(held_out_ids(samples, 0.0, 7, 0)) == 7
    assert len(held_out_ids(samples, 0.0, 50, 0)) == 20  # never more than a fifth
    assert held_out_ids(samples[:4], 0.0, 10, 0) == set()


def test_bootstrap_interval_brackets_the_mean_and_collapses_when_all_agree() -> None:
    from persona_studio.eval.judge import bootstrap

    assert bootstrap([1.0] * 20) == (1.0, 1.0)
    assert bootstrap([0.0] * 20) == (0.0, 0.0)
    lo, hi = bootstrap([1.0] * 10 + [0.0] * 10)
    assert 0.2 < lo < 0.5 < hi < 0.8
    assert bootstrap([1.0, 0.0] * 10, seed=3) == bootstrap([1.0, 0.0] * 10, seed=3)
