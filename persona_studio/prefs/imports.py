"""Preference datasets -> preference pairs: DPO (`chosen`/`rejected`) and KTO (`label`) files.

Shapes read (one record per JSONL line, JSON-array element, or a lone object):

    TRL DPO          {"prompt": str | [msgs], "chosen": str | [msgs], "rejected": str | [msgs]}
                     {"chosen": [msgs], "rejected": [msgs]}        (implicit prompt: the shared start)
    LLaMA-Factory    {"instruction", "input"?, "chosen": str, "rejected": str, "system"?, "history"?}
    DPO              {"conversations"|"messages": [turns], "chosen": turn, "rejected": turn, "system"?}
    TRL KTO          {"prompt": str | [msgs], "completion": str | [msgs], "label": bool}
    LLaMA-Factory    {"messages"|"conversations": [turns ending in the reply], "label"|"kto_tag": bool}
    KTO              {"instruction", "input"?, "output": str, "label": bool}

Turns are OpenAI ({role, content}) or ShareGPT ({from, value}). KTO rows are unpaired; the
desirable and undesirable completions of one prompt are paired up (round robin), and rows with
no counterpart under their prompt are counted, not stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persona_studio.ingest.base import ImportError_, Message
from persona_studio.ingest.common import ReadStats

FORMATS = ("dpo", "kto")


class BadRecord(ValueError):
    pass


# -- turns -------------------------------------------------------------------------------------
def _turn(t: Any) -> dict[str, str]:
    from persona_studio.ingest import generic

    if isinstance(t, str):
        return {"role": "assistant", "content": t}
    if not isinstance(t, dict):
        raise BadRecord("a turn is not an object")
    role = t.get("role", t.get("from"))
    content = t.get("content", t.get("value"))
    norm = generic._ROLES.get(str(role).lower())
    if norm is None:
        raise BadRecord(f"unknown role {role!r}")
    try:
        text = generic._text(content)
    except generic.BadRecord as exc:
        raise BadRecord(str(exc)) from None
    return {"role": norm, "content": text}


def _turns(v: Any, what: str) -> list[dict[str, str]]:
    if isinstance(v, str):
        return [{"role": "user", "content": v}]
    if isinstance(v, dict):
        return [_turn(v)]
    if not isinstance(v, list):
        raise BadRecord(f"'{what}' is neither text nor a list of turns")
    return [_turn(t) for t in v]


def _reply(v: Any, what: str) -> str:
    """A completion: text, one assistant turn, or a list whose last turn is the assistant's."""
    if isinstance(v, str):
        text = v
    else:
        turns = _turns(v, what) if not isinstance(v, dict) else [_turn(v)]
        if not turns or turns[-1]["role"] != "assistant":
            raise BadRecord(f"'{what}' does not end with an assistant reply")
        text = turns[-1]["content"]
    if not text.strip():
        raise BadRecord(f"'{what}' is empty")
    return text


def _split_system(turns: list[dict[str, str]], system: Any) -> tuple[str, list[dict[str, str]]]:
    sys_parts = [t["content"] for t in turns if t["role"] == "system"]
    if isinstance(system, str) and system.strip():
        sys_parts.insert(0, system)
    return "\n".join(sys_parts), [t for t in turns if t["role"] != "system"]


def _history(record: dict[str, Any]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    history = record.get("history") or []
    if not isinstance(history, list):
        raise BadRecord("history is not a list")
    for pair in history:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise BadRecord("history entries must be [question, answer]")
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return out


def _prompt(record: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """(system, prompt turns) of a record in any of the shapes above (KTO: minus its reply)."""
    if "instruction" in record:
        ins, extra = record.get("instruction"), record.get("input") or ""
        if not isinstance(ins, str) or not isinstance(extra, str):
            raise BadRecord("'instruction' and 'input' must be text")
        turns = _history(record) + [{"role": "user", "content": f"{ins}\n{extra}" if extra else ins}]
        return _split_system(turns, record.get("system"))
    for key in ("prompt", "conversations", "messages"):
        if key in record:
            return _split_system(_turns(record[key], key), record.get("system"))
    return _split_system([], record.get("system"))


def _common_start(a: list[dict[str, str]], b: list[dict[str, str]]) -> int:
    n = 0
    while n < min(len(a), len(b)) - 1 and a[n] == b[n]:
        n += 1
    return n


def dpo_pair(record: dict[str, Any]) -> dict[str, Any]:
    chosen, rejected = record.get("chosen"), record.get("rejected")
    if chosen is None or rejected is None:
        raise BadRecord("needs 'chosen' and 'rejected'")
    implicit = not any(k in record for k in ("prompt", "instruction", "conversations", "messages"))
    if implicit and isinstance(chosen, list) and isinstance(rejected, list):
        # TRL's implicit prompt: two whole conversations; the prompt is where they agree.
        c, r = _turns(chosen, "chosen"), _turns(rejected, "rejected")
        n = _common_start(c, r)
        system, prompt = _split_system(c[:n], record.get("system"))
        return {"system": system, "prompt": prompt, "chosen": _reply(c[n:], "chosen"),
                "rejected": _reply(r[n:], "rejected")}
    system, prompt = _prompt(record)
    return {"system": system, "prompt": prompt, "chosen": _reply(chosen, "chosen"),
            "rejected": _reply(rejected, "rejected")}


def kto_row(record: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """({system, prompt, reply}, desirable?) of one KTO record."""
    label = record.get("label", record.get("kto_tag"))
    if not isinstance(label, bool):
        raise BadRecord("'label' must be true or false")
    if "completion" in record:
        system, prompt = _prompt(record)
        reply = _reply(record["completion"], "completion")
    elif "output" in record:
        system, prompt = _prompt(record)
        reply = _reply(record["output"], "output")
    else:
        system, turns = _prompt(record)
        if not turns or turns[-1]["role"] != "assistant":
            raise BadRecord("the conversation does not end with an assistant reply")
        prompt, reply = turns[:-1], turns[-1]["content"]
    return {"system": system, "prompt": prompt, "reply": reply}, label


# -- files ---------------------------------------------------------------------------------------
def _records(path: Path, encoding: str, stats: ReadStats) -> Iterator[tuple[str, Any]]:
    from persona_studio.ingest import generic

    yield from generic._records(path, encoding, stats)


def read_pairs(path: Path, fmt: str, encoding: str, stats: ReadStats) -> tuple[list[dict[str, Any]], int]:
    """(pairs, KTO rows left without a counterpart) of a dpo or kto file; bad records go to stats."""
    if fmt == "dpo":
        pairs = []
        for at, record in _records(path, encoding, stats):
            try:
                if not isinstance(record, dict):
                    raise BadRecord("not a JSON object")
                pair = dpo_pair(record)
            except BadRecord as exc:
                stats.add_bad(at, str(exc))
                continue
            if pair["chosen"].strip() == pair["rejected"].strip():
                stats.add_bad(at, "chosen and rejected are the same text")
                continue
            pair["meta"] = {"from": at}
            pairs.append(pair)
            stats.read += 1
        return pairs, 0
    groups: dict[str, dict[str, Any]] = {}
    for at, record in _records(path, encoding, stats):
        try:
            if not isinstance(record, dict):
                raise BadRecord("not a JSON object")
            row, good = kto_row(record)
        except BadRecord as exc:
            stats.add_bad(at, str(exc))
            continue
        stats.read += 1
        key = json.dumps([row["system"], row["prompt"]], ensure_ascii=False)
        g = groups.setdefault(key, {"system": row["system"], "prompt": row["prompt"], True: [], False: []})
        g[good].append((row["reply"], at))
    pairs, unpaired = [], 0
    for g in groups.values():
        good, bad = g[True], g[False]
        if not good or not bad:
            unpaired += len(good) + len(bad)
            continue
        # Round robin: every row is used at least once, none more often than needed.
        for i in range(max(len(good), len(bad))):
            (c, c_at), (r, r_at) = good[i % len(good)], bad[i % len(bad)]
            if c.strip() != r.strip():
                pairs.append({"system": g["system"], "prompt": g["prompt"], "chosen": c, "rejected": r,
                              "meta": {"from": [c_at, r_at]}})
    return pairs, unpaired


def messages(path: Path, fmt: str, encoding: str, stats: ReadStats) -> Iterator[Message]:
    """The conversations of a preference file as messages (prompt + preferred reply), e.g. for
    `speakers`; importing such a file stores pairs instead (see `import_into`)."""
    pairs, _ = read_pairs(path, fmt, encoding, stats)
    for conv, p in enumerate(pairs):
        turns = ([{"role": "system", "content": p["system"]}] if p["system"] else []) + p["prompt"]
        turns.append({"role": "assistant", "content": p["chosen"]})
        for t in turns:
            yield Message(ts=None, speaker=t["role"], text=t["content"], speaker_id=t["role"], role=t["role"],
                          conv=conv)


def preference_format(path: Path, fmt: str) -> str | None:
    """'dpo' or 'kto' when `path` is a preference dataset (by --format or by its content), else None."""
    if fmt in FORMATS:
        return fmt
    if fmt != "auto":
        return None
    from persona_studio import ingest

    try:
        found = ingest.detect(path)
    except ImportError_:
        return None  # the ordinary import path reports it
    return found if found in FORMATS else None


def import_into(db: Any, persona_id: str, path: Path, sha: str, fmt: str, pii: Any = None) -> dict[str, Any]:
    """Store the pairs of a preference dataset in the open transaction `db`; the import summary."""
    from persona_studio import ingest
    from persona_studio.prefs.store import insert_imported

    stats = ReadStats()
    fmt, encoding, _head = ingest._resolve(path, fmt, stats)
    pairs, unpaired = read_pairs(path, fmt, encoding, stats)
    if not pairs:
        why = stats.bad_examples[0] if stats.bad_examples else (
            f"{path}: {unpaired} KTO row(s), but no prompt has both a desirable and an undesirable reply"
            if unpaired else f"{path}: no records")
        raise ImportError_(f"no preference pair imported; first problem: {why}")
    import_id = db.execute(
        "INSERT INTO imports (persona_id, path, sha256, format, me) VALUES (?,?,?,?,?)",
        (persona_id, str(path), sha, fmt, ""),
    ).lastrowid
    stored, dropped = insert_imported(db, persona_id, import_id, f"import_{fmt}", pairs, pii)
    summary = {
        "path": str(path), "status": "imported", "import_id": import_id, "format": fmt, "encoding": encoding,
        "read": stats.read, "stored": 0, "pairs": stored, "pairs_dropped_pii": dropped, "kto_unpaired": unpaired,
        "bad": stats.bad, "bad_examples": list(stats.bad_examples)[:5], "skipped_kinds": dict(stats.skipped_kinds),
        "kinds": {}, "me": "(preference dataset)", "me_messages": 0, "speakers": 0,
    }
    db.execute("UPDATE imports SET summary = ? WHERE id = ?", (json.dumps(summary, ensure_ascii=False), import_id))
    return summary
