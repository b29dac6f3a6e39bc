"""The column path of make-dataset (clean/columnar.py) gives exactly what the message-by-message
Sessionizer gives: same samples in the same order, same hits, same counts, on random chats
built to hit every rule (gaps around both windows, group chats, non-text kinds, blocked words,
PII, empty messages), with windows small enough that conversations are carried across them."""

from __future__ import annotations

import csv
import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from persona_studio.clean import columnar, pipeline
from persona_studio.clean.pipeline import make_dataset
from persona_studio.importer import import_files
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import add_persona

HEADER = ["id", "MsgSvrID", "type_name", "is_sender", "talker", "room_name", "msg", "src", "CreateTime"]
LINES = ["hi", "ok", "好的", "在吗", "see you at 7", "价格是199元", "我的手机是13812345678", "mail a@b.com",
         "that darn cat", "Password is 123", "  ", "x", "a much longer line that goes on " * 3, "多行\n消息",
         # JSON escapes, control characters, Unicode spaces at the edges, full-width digits, a
         # word in another case (the column path pre-checks with RE2, then confirms in Python)
         'she said "hi" \\ back', "tab\there\x01\x1f", "\u3000全角空格\u2003", "\x1c edge \x85",
         "电话１３８１２３４５６７８", "DARN IT", "ﬀ ligature ſ long s", "emoji 😀 beyond the BMP"]
KINDS = ["文本"] * 12 + ["图片", "撤回消息", "引用回复", "系统通知"]


def random_export(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    t = datetime(2024, 1, 1, 9)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(1, n + 1):
            # gaps straddle the 2-minute combine and 5-minute reply windows (and sometimes go far)
            t += timedelta(seconds=rng.choice((0, 30, 119, 121, 200, 299, 301, 900, 20000)))
            room = rng.choice(["", "", "茶话会", "book club"])
            talker = rng.choice(["李四", "Carol", 'Bob "B"\\']) if room else "李四"
            w.writerow([i, 1000 + i, rng.choice(KINDS), int(rng.random() < 0.45), talker, room,
                        rng.choice(LINES), "", t.strftime("%Y-%m-%d %H:%M:%S")])
    return path


def snapshot(ws: Workspace, summary: dict[str, Any]) -> dict[str, Any]:
    with ws.store() as store:
        samples = [tuple(r) for r in store.query(
            "SELECT hash, system, turns, n_turns, n_tokens, meta FROM samples ORDER BY id")]
        hits = [tuple(r) for r in store.query(
            "SELECT word, import_id, seq, text, sample_hash FROM blocked_hits ORDER BY id")]
    summary = {k: v for k, v in summary.items() if k not in ("seconds", "run_id")}
    return {"samples": samples, "hits": sorted(hits, key=repr), "summary": summary}


SETTINGS = [
    '{make_dataset: {blocked_words: ["darn", "password"]}}',
    '{make_dataset: {blocked_words: ["darn"], non_text: "cut", max_turns: 3, min_turn_chars: 2,'
    ' max_turn_chars: 40, pii: {phone: "drop"}}}',
    '{make_dataset: {dedup: false, blocked_words: ["CAT"], single_combine_time_window: 0.5,'
    ' qa_match_time_window: 4, combine_separator: "\\t"}}',
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("window", [7, 1 << 18])
def test_column_path_equals_the_message_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             settings: str, window: int) -> None:
    check_equal(tmp_path, monkeypatch, settings, window)


def test_without_the_re2_precheck_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A word list RE2 refuses (or none it can take) leaves the exact batch checks."""
    from persona_studio.clean.blocked import BlockedWords

    monkeypatch.setattr(BlockedWords, "prefilter", lambda self: None)
    check_equal(tmp_path, monkeypatch, SETTINGS[1], 1 << 18)
    monkeypatch.setattr(BlockedWords, "prefilter", lambda self: "(?P<broken")  # RE2 says ArrowInvalid
    (tmp_path / "again").mkdir()
    check_equal(tmp_path / "again", monkeypatch, SETTINGS[0], 7)


def test_with_the_real_tokenizer_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path) -> None:
    """Token counts by a local tokenizer (the column path tokenizes turn texts itself then)."""
    settings = SETTINGS[1].replace("{make_dataset:", f"{{model: {{name_or_path: {json.dumps(str(tiny_model))}}}, make_dataset:")
    check_equal(tmp_path, monkeypatch, settings, 1 << 18)


def check_equal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: str, window: int) -> None:
    export = random_export(tmp_path / "chat.csv", 3000, seed=len(settings) + window)
    if "name_or_path" not in settings:  # a model with no local tokenizer: the estimate path (the default is built in)
        settings = settings.replace("{make_dataset:", '{model: {name_or_path: "no-such/model"}, make_dataset:', 1)
    results = []
    for name, generic in (("msg", frozenset({"wechat"})), ("col", pipeline.GENERIC_FORMATS)):
        ws = Workspace.init(tmp_path / name)
        ws.settings_path.write_text(settings, encoding="utf-8")
        ws = Workspace.open(ws.root)
        add_persona(ws, "p")
        import_files(ws, "p", [export], me="me")
        monkeypatch.setattr(pipeline, "GENERIC_FORMATS", generic)
        monkeypatch.setattr(columnar, "WINDOW", window)
        results.append(snapshot(ws, make_dataset(ws, "p")))
    msg, col = results
    assert len(msg["samples"]) > 50 and msg["hits"]
    assert msg["summary"]["tokens"]["exact"] == ("no-such/model" not in settings)
    assert col["summary"] == msg["summary"]
    assert col["samples"] == msg["samples"]
    assert col["hits"] == msg["hits"]


CHAT_EXPORTS = ["wechat_private.csv", "wechat_group_gbk.csv", "telegram_full.json", "whatsapp_android.txt",
                "whatsapp_ios.txt", "whatsapp_utf16.txt", "qq_history.txt", "discord_channel.json",
                "wechat_content_json.csv", "wechat_iso_english.csv", "whatsapp_locales/ar.txt",
                "whatsapp_locales/fr.txt", "whatsapp_locales/zh.txt"]


@pytest.mark.parametrize("name", CHAT_EXPORTS)
def test_every_chat_export_format_gives_the_same_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         name: str) -> None:
    """Non-WeChat exports reach the column path as blocks built from Messages (plain string
    columns, no dictionaries): same result as the message path there too."""
    from persona_studio import ingest

    export = Path(__file__).parent / "data" / "ingest" / name
    me = ingest.speakers(export)[0][0]
    results = []
    for label, generic in (("msg", frozenset(ingest.FORMATS)), ("col", pipeline.GENERIC_FORMATS)):
        ws = Workspace.init(tmp_path / label)
        ws.settings_path.write_text('{make_dataset: {blocked_words: ["the"]}}', encoding="utf-8")
        ws = Workspace.open(ws.root)
        add_persona(ws, "p")
        import_files(ws, "p", [export], me=me)
        monkeypatch.setattr(pipeline, "GENERIC_FORMATS", generic)
        results.append(snapshot(ws, make_dataset(ws, "p")))
    msg, col = results
    assert msg["summary"]["messages"]["read"] > 0
    assert col == msg


def test_several_imports_of_one_persona(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two exports (and a generic dataset between them, which takes the message path): the
    column path's writer thread and the message path take turns in import order."""
    exports = [random_export(tmp_path / f"chat{i}.csv", 800, seed=40 + i) for i in range(2)]
    dataset = tmp_path / "extra.jsonl"
    dataset.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                          {"role": "assistant", "content": f"a{i}"}]})
                                 for i in range(30)) + "\n", encoding="utf-8")
    results = []
    for name, generic in (("msg", frozenset({"wechat", *pipeline.GENERIC_FORMATS})), ("col", pipeline.GENERIC_FORMATS)):
        ws = Workspace.init(tmp_path / name)
        ws.settings_path.write_text(SETTINGS[0], encoding="utf-8")
        ws = Workspace.open(ws.root)
        add_persona(ws, "p")
        for path in (exports[0], dataset, exports[1]):
            import_files(ws, "p", [path], me="me" if path.suffix == ".csv" else None)
        monkeypatch.setattr(pipeline, "GENERIC_FORMATS", generic)
        monkeypatch.setattr(columnar, "WINDOW", 64)
        results.append(snapshot(ws, make_dataset(ws, "p")))
    msg, col = results
    assert msg["summary"]["samples"]["total"] > 30 + 50
    assert col == msg
