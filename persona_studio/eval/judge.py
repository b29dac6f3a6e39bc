"""Pairwise LLM judge: "which reply is more like NAME's real one?", adapter vs the base model.

The judge is the make-dataset judge (clean/judge.py make_judge: the offline one on an engine
service, or an OpenAI-compatible API). Each held-out item is asked once per adapter, with the
two replies in a seeded random order so a judge that prefers the first slot favours no one; a
vLLM judge is constrained to answer "A" or "B". The win rate comes with a bootstrap interval
over the items.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PROMPT = (
    "Here is what {name} really replied in a chat:\n\n{real}\n\nTwo chatbots imitating {name} replied to the "
    "same messages:\n\nA: {a}\n\nB: {b}\n\nWhich reply sounds more like {name}'s real one (wording, tone, length, "
    "habits)? Answer with one letter: A or B."
)


def bootstrap(wins: Sequence[float], rounds: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of `wins` (1 win, 0 loss, 0.5 no answer)."""
    if not wins:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(wins)
    means = sorted(sum(wins[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    lo = means[int((1 - level) / 2 * rounds)]
    hi = means[min(rounds - 1, int((1 + level) / 2 * rounds))]
    return (lo, hi)


def _ask(judge: Any, prompt: str) -> str:
    """One answer, constrained to A/B on a vLLM server; plain (first letter parsed) elsewhere."""
    import openai

    kwargs: dict[str, Any] = {"model": judge.model, "messages": [{"role": "user", "content": prompt}],
                              "max_tokens": 2, "temperature": 0.0}
    if getattr(judge, "constrain", True):
        try:
            r = judge.client.chat.completions.create(**kwargs, extra_body={"structured_outputs": {"choice": ["A", "B"]}})
            return r.choices[0].message.content or ""
        except openai.BadRequestError:
            judge.constrain = False
    r = judge.client.chat.completions.create(**kwargs)
    return r.choices[0].message.content or ""


def pairwise(judge: Any, name: str, items: list[dict[str, Any]], label: str, seed: int = 0) -> dict[str, Any]:
    """`label`'s win rate against "base" on `items` (each with real and replies[label/base])."""
    from persona_studio.clean.judge import JudgeError

    rng = random.Random(f"{seed}:{label}")
    order = [rng.random() < 0.5 for _ in items]  # True: the adapter's reply is A

    def one(k: int) -> float:
        it = items[k]
        ours, base = it["replies"][label], it["replies"]["base"]
        a, b = (ours, base) if order[k] else (base, ours)
        try:
            answer = _ask(judge, PROMPT.format(name=name, real=it["real"], a=a, b=b)).strip().upper()[:1]
        except Exception as exc:  # noqa: BLE001 - any API failure is one line for the user
            raise JudgeError(f"judge: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
                             [:300]) from None
        if answer not in ("A", "B"):
            return 0.5
        return 1.0 if (answer == "A") == order[k] else 0.0

    with ThreadPoolExecutor(max_workers=8) as pool:
        wins = list(pool.map(one, range(len(items))))
    lo, hi = bootstrap(wins, seed=seed)
    return {"judge_win_rate": round(sum(wins) / len(wins), 4) if wins else None,
            "judge_ci_low": round(lo, 4), "judge_ci_high": round(hi, 4), "judge_n": len(wins)}


def judge_all(ws: Any, name: str, items: list[dict[str, Any]], labels: list[str], seed: int) -> dict[str, Any]:
    """{label: win-rate fields} for every adapter but the base (which the others are judged against)."""
    from persona_studio.clean.judge import make_judge

    judge = make_judge(ws)
    try:
        return {label: pairwise(judge, name, items, label, seed) for label in labels if label != "base"}
    finally:
        judge.close()
