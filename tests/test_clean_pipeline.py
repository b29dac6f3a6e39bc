"""make-dataset over a real store: cleaning, re-runs that keep review work, blocked hits, tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persona_studio.clean.pipeline import make_dataset
from persona_studio.errors import UserError
from persona_studio.importer import import_files
from persona_studio.workspace import Workspace

HEADER = "id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime\n"


def wechat_csv(path: Path, rows: list[tuple[str, int, str, str, str]]) -> Path:
    """rows: (type_name, is_sender, talker, msg, CreateTime)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for i, (kind, sender, talker, msg, t) in enumerate(rows, 1):
        w.writerow([i, 1000 + i, kind, sender, talker, "", msg, "", t])
    path.write_text(HEADER + buf.getvalue(), encoding="utf-8")
    return path


def add_persona(ws: Workspace, pid: str = "alice", system: str = "You are Alice.") -> str:
    d = ws.personas_dir / pid
    d.mkdir(parents=True, exist_ok=True)
    (d / "persona.jsonc").write_text(json.dumps({"name": pid.title(), "system_prompt": system}), encoding="utf-8")
    return pid


def set_settings(ws: Workspace, text: str) -> Workspace:
    ws.settings_path.write_text(text, encoding="utf-8")
    return Workspace.open(ws.root)


CHAT = [
    ("文本", 0, "bob", "你好呀", "2024-10-04 11:00:00"),
    ("文本", 1, "bob", "嗨！我的电话是13812345678", "2024-10-04 11:01:00"),
    ("图片", 0, "bob", "[图片]", "2024-10-04 11:02:00"),
    ("文本", 0, "bob", "my password is hunter2", "2024-10-04 11:02:30"),
    ("文本", 0, "bob", "周末去喝茶吗", "2024-10-04 11:03:00"),
    ("文本", 1, "bob", "好啊 mail me at a@b.com", "2024-10-04 11:04:00"),
    ("文本", 0, "bob", "明天见", "2024-10-05 09:00:00"),
    ("文本", 1, "bob", "明天见", "2024-10-05 09:01:00"),
    ("文本", 0, "bob", "明天见", "2024-10-06 09:00:00"),
    ("文本", 1, "bob", "明天见", "2024-10-06 09:01:00"),
]
# a quote-reply is text (the reply); recalls and system notices are not
MORE_KINDS = [
    ("文本", 0, "bob", "看这个", "2024-10-08 09:00:00"),
    ("引用回复", 1, "bob", "哈哈 好看", "2024-10-08 09:00:30"),
    ("撤回消息", 0, "bob", "bob撤回了一条消息", "2024-10-08 09:00:40"),
    ("系统通知", 0, "bob", "你已添加了bob", "2024-10-08 09:00:50"),
]


@pytest.fixture
def ws(workspace: Workspace, tmp_path: Path) -> Workspace:
    # A hub model that is not on this machine: token counts are the estimate (the exact path with a
    # local tokenizer is tested below).
    ws = set_settings(workspace, '{model: {name_or_path: "Qwen/Qwen2.5-7B-Instruct"}, '
                                 'make_dataset: {blocked_words: ["PASSWORD"], pii: {email: "drop"}}}')
    add_persona(ws)
    import_files(ws, "alice", [wechat_csv(tmp_path / "chat.csv", CHAT + MORE_KINDS)], "me")
    return ws


def rows(ws: Workspace, sql: str, params: tuple = ()) -> list[dict]:
    store = ws.store()
    try:
        return [dict(r) for r in store.query(sql, params)]
    finally:
        store.close()


def test_clean_redact_block_skip_dedup(ws: Workspace) -> None:
    s = make_dataset(ws, "alice")
    assert s["messages"]["read"] == 14
    assert s["messages"]["skipped"] == {"blocked_word": 1, "non_text:image": 1, "non_text:recall": 1,
                                        "non_text:system": 1, "pii_drop": 1}
    assert s["redacted"] == {"phone": 1} and s["pii_dropped"] == {"email": 1}
    assert s["samples"]["total"] == 3 and s["samples"]["duplicates_dropped"] == 1
    samples = rows(ws, "SELECT system, turns, status, run_id FROM samples ORDER BY id")
    assert all(x["system"] == "You are Alice." and x["status"] == "pending" for x in samples)
    first = json.loads(samples[0]["turns"])
    # the email message was dropped, so the 11:03 question has no reply left: it is trimmed
    assert first == [
        {"role": "user", "content": "你好呀", "name": "bob"},
        {"role": "assistant", "content": "嗨！我的电话是<PHONE>"},
    ]
    hits = rows(ws, "SELECT word, text, sample_hash, run_id FROM blocked_hits")
    (h,) = rows(ws, "SELECT hash FROM samples ORDER BY id LIMIT 1")
    assert hits == [{"word": "PASSWORD", "text": "my password is hunter2", "sample_hash": h["hash"],
                     "run_id": s["run_id"]}]
    (run,) = rows(ws, "SELECT summary FROM dataset_runs")
    assert json.loads(run["summary"])["samples"]["total"] == 3
    last = json.loads(rows(ws, "SELECT turns FROM samples ORDER BY id DESC LIMIT 1")[0]["turns"])
    assert last == [{"role": "user", "content": "看这个", "name": "bob"}, {"role": "assistant", "content": "哈哈 好看"}]
    assert s["tokens"]["exact"] is False and "estimate" in s["tokens"]["counter"]


def test_rerun_keeps_review_state_and_removes_stale(ws: Workspace) -> None:
    from persona_studio import review

    make_dataset(ws, "alice")
    before = rows(ws, "SELECT id, hash, turns FROM samples ORDER BY id")
    store = ws.store()
    try:
        review.set_status(store, [before[0]["id"]], "accepted")
        with store.tx() as db:  # a review edit: turns change, the hash does not
            db.execute("UPDATE samples SET turns = ? WHERE id = ?",
                       (json.dumps([{"role": "user", "content": "x"}, {"role": "assistant", "content": "edited"}]),
                        before[1]["id"]))
            db.execute("INSERT INTO edits (sample_id, action, before, after) VALUES (?, 'edit', ?, ?)",
                       (before[1]["id"], before[1]["turns"], "[]"))
    finally:
        store.close()
    s2 = make_dataset(ws, "alice")
    assert s2["samples"] == {"total": 3, "new": 0, "kept_with_review_state": 3, "removed_stale": 0,
                             "duplicates_dropped": 1}
    after = rows(ws, "SELECT id, status, turns, run_id FROM samples ORDER BY id")
    assert [a["id"] for a in after] == [b["id"] for b in before]
    assert after[0]["status"] == "accepted" and "edited" in after[1]["turns"]
    assert all(a["run_id"] == s2["run_id"] for a in after)
    assert len(rows(ws, "SELECT 1 FROM blocked_hits")) == 1  # the latest run's hits only

    # a settings change that alters samples: the old first sample is gone, the untouched one stays
    ws2 = set_settings(ws, '{make_dataset: {blocked_words: ["PASSWORD"], pii: {email: "drop", phone: "keep"}}}')
    # The accepted sample's text changes (its phone number is kept now): its review work cannot
    # follow it, so make-dataset refuses unless forced (tests/test_review_work.py).
    with pytest.raises(UserError, match="would drop the review work on 1 sample"):
        make_dataset(ws2, "alice")
    s3 = make_dataset(ws2, "alice", force=True)
    assert s3["review"] == {"carried_status": 0, "carried_edits": 0, "dropped": 1}
    assert s3["samples"]["new"] == 1 and s3["samples"]["removed_stale"] == 1
    assert s3["samples"]["kept_with_review_state"] == 2
    texts = [r["turns"] for r in rows(ws, "SELECT turns FROM samples ORDER BY id")]
    assert any("13812345678" in t for t in texts) and any("edited" in t for t in texts)
    assert len(rows(ws, "SELECT 1 FROM dataset_runs")) == 3


def test_non_text_cut_and_dedup_off(workspace: Workspace, tmp_path: Path) -> None:
    ws = set_settings(workspace, '{make_dataset: {non_text: "cut", dedup: false}}')
    add_persona(ws)
    import_files(ws, "alice", [wechat_csv(tmp_path / "c.csv", CHAT)], "me")
    s = make_dataset(ws, "alice")
    # the image cuts 11:00-11:04 in two; no dedup: both "明天见" samples stay (second as hash#2)
    assert s["samples"]["duplicates_dropped"] == 0
    hashes = [r["hash"] for r in rows(ws, "SELECT hash FROM samples ORDER BY id")]
    assert len(hashes) == 4 and hashes[-1] == hashes[-2] + "#2"


def test_generic_dataset_keeps_source_boundaries(workspace: Workspace, tmp_path: Path) -> None:
    add_persona(workspace)
    f = tmp_path / "d.jsonl"
    f.write_text(
        '{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"},'
        ' {"role": "assistant", "content": "hello"}]}\n'
        '{"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]}\n',
        encoding="utf-8",
    )
    imp = import_files(workspace, "alice", [f], None)
    assert imp["files"][0]["format"] == "openai" and imp["me_messages"] == 2
    s = make_dataset(workspace, "alice")
    assert s["messages"]["skipped"] == {"source_system_prompt": 1}
    got = [json.loads(r["turns"]) for r in rows(workspace, "SELECT turns FROM samples ORDER BY id")]
    assert got == [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}],
    ]


def test_token_report_uses_the_local_tokenizer(workspace: Workspace, tmp_path: Path, tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    ws = set_settings(workspace, json.dumps({"model": {"name_or_path": str(tiny_model)}}))
    add_persona(ws)
    import_files(ws, "alice", [wechat_csv(tmp_path / "c.csv", CHAT)], "me")
    s = make_dataset(ws, "alice")
    t = s["tokens"]
    assert t["exact"] is True and str(tiny_model) in t["counter"]
    tok = AutoTokenizer.from_pretrained(tiny_model)
    # every stored n_tokens is at least the real template-rendered length of that sample
    for r in rows(ws, "SELECT system, turns, n_tokens FROM samples"):
        msgs = [{"role": "system", "content": r["system"]}, *json.loads(r["turns"])]
        ids = tok.apply_chat_template(msgs, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert abs(r["n_tokens"] - len(ids)) <= 2 * len(msgs)
    assert t["suggested_cutoff_len"] % 64 == 0 and t["suggested_cutoff_len"] >= t["p99"]


def test_blocked_words_file_missing_is_one_line_error(workspace: Workspace) -> None:
    from persona_studio.errors import UserError

    ws = set_settings(workspace, '{make_dataset: {blocked_words_file: "nope.txt"}}')
    add_persona(ws)
    with pytest.raises(UserError, match=r"nope.txt: not found \(make_dataset.blocked_words_file\)"):
        make_dataset(ws, "alice")
    assert rows(ws, "SELECT count(*) n FROM dataset_runs") == [{"n": 0}]


@pytest.mark.parametrize(
    ("card_prompt", "expected"),
    [("You are {{char}}, who loves tea.", "You are Alice, who loves tea."),
     ("", "You are Alice. Stay in character as Alice.")],
)
def test_system_prompt_comes_from_the_card(workspace: Workspace, tmp_path: Path, card_prompt: str,
                                           expected: str) -> None:
    add_persona(workspace, "alice", card_prompt)
    import_files(workspace, "alice", [wechat_csv(tmp_path / "c.csv", CHAT)], "me")
    make_dataset(workspace, "alice")
    assert {r["system"] for r in rows(workspace, "SELECT system FROM samples")} == {expected}
