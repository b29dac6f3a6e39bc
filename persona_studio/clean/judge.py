"""LLM judge: score each sample 1-5 and accept/reject it by `judge.accept_score`.

Two backends, one client: offline, vLLM's server as an engine service (engine/service.py: the
workspace's chat engine for the base model, a judge service for another `model_name`), or an
OpenAI-compatible API (`judge.online_llm_clear`, `base_url`, `model_name`, `api_key_env`). vLLM
servers constrain the answer to the choice "1".."5" through `structured_outputs`, so any model —
even a tiny random one — answers with a valid score; other servers are parsed for the first
digit 1-5.

Scores land in `scores` (judge = "vllm:<model>" / "api:<model>"). The judge sets a sample's
status only while no review action is live on it: a person's accept/reject/edit wins.
Already-scored samples are skipped unless `rescore`; scores are written per batch, so an
interrupted run keeps what it finished and the next run continues.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from persona_studio.errors import UserError

Progress = Callable[[int, int | None], None]
CHOICES = ["1", "2", "3", "4", "5"]
_DIGIT = re.compile(r"[1-5]")
_ONLINE_MAX_CHARS = 8000
_TOO_LONG = re.compile(r"context length|too long|maximum.{0,40}tokens", re.IGNORECASE)

INSTRUCTION = (
    "You check training data for a chatbot that imitates {name}. Below is one conversation; "
    "the lines of {name} are what the bot will learn to say.\n\n{conversation}\n\n"
    "Rate from 1 to 5 how useful it is for learning to talk like {name}: 5 = natural, coherent, "
    "in character; 3 = usable but dull or thin; 1 = noise, broken, spam or off-topic. "
    "Answer with one digit only."
)


class JudgeError(UserError, RuntimeError):
    pass


def render(name: str, turns: Sequence[dict[str, Any]]) -> str:
    lines = []
    for t in turns:
        who = name if t["role"] == "assistant" else t.get("name") or "Other"
        lines.append(f"{who}: {t['content']}")
    return "\n".join(lines)


def parse_score(text: str) -> int | None:
    m = _DIGIT.search(text or "")
    return int(m.group(0)) if m else None


class OnlineJudge:
    """Any OpenAI-compatible chat endpoint; requests of one batch run concurrently."""

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout_s: float, workers: int = 8):
        from openai import OpenAI

        self.name = f"api:{model}"
        self.base_url, self.model, self.workers = base_url, model, workers
        self.client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout_s, max_retries=1)
        self.constrain = True

    def _one(self, persona_name: str, turns: Sequence[dict[str, Any]]) -> int | None:
        import openai

        conv = render(persona_name, turns)[:_ONLINE_MAX_CHARS]
        for _ in range(6):
            prompt = INSTRUCTION.format(name=persona_name, conversation=conv)
            try:
                return parse_score(self._ask(prompt))
            except openai.BadRequestError as exc:
                if not _TOO_LONG.search(str(exc.message)):
                    raise JudgeError(f"judge: {self.base_url} refused the request: {exc.message}"[:300]) from None
                # The server's context is smaller than ours: it does not say by how much, so halve.
                conv = conv[: len(conv) // 2] + " …"
            except openai.APIConnectionError as exc:
                raise JudgeError(f"judge: cannot reach {self.base_url} (judge.base_url): {exc}") from None
            except openai.APIStatusError as exc:
                raise JudgeError(f"judge: {self.base_url} answered {exc.status_code}: {exc.message}"[:300]) from None
        return None

    def _ask(self, prompt: str) -> str:
        import openai

        kwargs: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                                  "max_tokens": 4, "temperature": 0.0}
        if self.constrain:
            try:
                r = self.client.chat.completions.create(
                    **kwargs, extra_body={"structured_outputs": {"choice": CHOICES}})
                return r.choices[0].message.content or ""
            except openai.BadRequestError as exc:
                if _TOO_LONG.search(str(exc.message)):
                    raise
                # Not a vLLM server (unknown field): ask plainly from now on and parse the digit.
                r = self.client.chat.completions.create(**kwargs)
                self.constrain = False
                return r.choices[0].message.content or ""
        r = self.client.chat.completions.create(**kwargs)
        return r.choices[0].message.content or ""

    def score(self, persona_name: str, samples: Sequence[Sequence[dict[str, Any]]]) -> list[int | None]:
        with ThreadPoolExecutor(max_workers=min(self.workers, max(1, len(samples)))) as pool:
            return list(pool.map(lambda t: self._one(persona_name, t), samples))

    def close(self) -> None:
        self.client.close()


class ServiceJudge(OnlineJudge):
    """The offline judge through an engine service: vLLM never runs in the studio's process.

    On the base model it reuses the workspace's running engine service (no second copy of the
    model) or starts one for this run; another judge model gets a judge service of its own.
    Whatever this run started it stops afterwards; vLLM's output goes to the service's log.
    """

    def __init__(self, ws: Any):
        from persona_studio.engine import service

        model = ws.settings.make_dataset.judge.model_name
        # The base model: the chat engine's service. Another model: a judge service of its own.
        self.role = service.JUDGE if model else service.ENGINE
        info, self.started = service.ensure(ws, role=self.role)
        super().__init__(info.base_url, info.model, service.api_key(ws, role=self.role), ws.settings.engine.timeout_s)
        self.name = f"vllm:{model or ws.settings.model.name_or_path}"  # the same name as in-process scores had
        self.ws = ws

    def close(self) -> None:
        super().close()
        if self.started:
            from persona_studio.engine import service

            service.stop(self.ws, role=self.role)


def make_judge(ws: Any) -> OnlineJudge:
    """The online judge (any OpenAI-compatible API), or the offline one on an engine service."""
    from persona_studio import settings as settings_mod

    s = ws.settings
    j = s.make_dataset.judge
    if j.online_llm_clear:
        from persona_studio import basemodel

        # Empty model_name: the base model, named as `persona-studio serve` names it (its path).
        model = j.model_name or basemodel.resolve(ws).path_or_name
        return OnlineJudge(j.base_url, model, settings_mod.api_key(j.api_key_env), j.timeout_s)
    return ServiceJudge(ws)


def score_persona(ws: Any, persona_id: str, *, rescore: bool = False, judge: Any = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Score the persona's samples (those not yet scored by this judge, unless `rescore`)."""
    import json

    from persona_studio.clean.pii import Redactor
    from persona_studio.importer import check_persona
    from persona_studio.persona.card import load_persona

    check_persona(ws, persona_id)
    # What a judge sees is redacted by make_dataset.pii first ('drop' kinds too), names included:
    # samples made before a rule existed, or edited in review, must not reach an online API raw.
    redactor = Redactor(ws.settings.make_dataset.pii)
    name = redactor.redact(load_persona(ws, persona_id).name or persona_id)
    j = ws.settings.make_dataset.judge
    own = judge is None
    judge = judge or make_judge(ws)
    store = ws.store()
    counts: Counter[str] = Counter()
    try:
        skip_scored = "" if rescore else " AND NOT EXISTS (SELECT 1 FROM scores c WHERE c.sample_id = s.id AND c.judge = ?)"
        params: tuple[Any, ...] = (persona_id,) if rescore else (persona_id, judge.name)
        rows = store.query(f"SELECT s.id, s.turns FROM samples s WHERE s.persona_id = ?{skip_scored} ORDER BY s.id", params)
        total = len(rows)
        for start in range(0, total, j.batch_size):
            batch = rows[start:start + j.batch_size]
            scores = judge.score(name, [redactor.redact_turns(json.loads(r["turns"])) for r in batch])
            with store.tx() as db:
                for r, sc in zip(batch, scores, strict=True):
                    if sc is None:
                        counts["unparsed"] += 1
                        continue
                    counts[f"score_{sc}"] += 1
                    db.execute(
                        "INSERT INTO scores (sample_id, judge, score) VALUES (?,?,?)"
                        " ON CONFLICT(sample_id, judge) DO UPDATE SET score = excluded.score,"
                        " scored_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')",
                        (r["id"], judge.name, float(sc)),
                    )
                    status = "accepted" if sc >= j.accept_score else "rejected"
                    changed = db.execute(
                        "UPDATE samples SET status = ? WHERE id = ? AND status != ? AND NOT EXISTS"
                        " (SELECT 1 FROM edits e WHERE e.sample_id = samples.id AND e.undone = 0)",
                        (status, r["id"], status),
                    ).rowcount
                    counts[status] += 1
                    counts["status_changed"] += changed
            if progress is not None:
                progress(min(start + j.batch_size, total), total)
    finally:
        store.close()
        if own:
            judge.close()
    return {"persona": persona_id, "judge": judge.name, "scored": total - counts["unparsed"],
            "accept_score": j.accept_score, **dict(sorted(counts.items()))}
