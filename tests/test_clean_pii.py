"""PII redaction: each kind is found, validated and replaced; ordinary numbers survive. The
table (tests/pii_table.py) is held through the function, both make-dataset paths and
`export dataset`; the pre-checks that pick the texts to look at are held to flag them all."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from persona_studio.clean.pii import PLACEHOLDERS, Redactor, id_card_ok, luhn_ok
from persona_studio.cli import main
from persona_studio.workspace import Workspace
from tests.pii_table import ORDINARY, PII


def _id_with_checksum(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights, strict=True)) % 11]


VALID_ID = _id_with_checksum("11010519491231002")  # ends in X
VALID_ID2 = _id_with_checksum("44030419900307123")


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("我的手机13812345678，打给我", "我的手机<PHONE>，打给我", "phone"),
        ("call +86 138 1234 5678 ok", "call <PHONE> ok", "phone"),
        ("call +1 415 555 2671 now", "call <PHONE> now", "phone"),
        ("call 0044 20 7946 0958 now", "call <PHONE> now", "phone"),  # the whole number, not its tail
        ("tel +44 20 7946 0958.", "tel <PHONE>.", "phone"),
        ("座机 010-12345678", "座机 <PHONE>", "phone"),
        ("(415) 555-2671 is mine", "<PHONE> is mine", "phone"),
        (f"身份证{VALID_ID}。", "身份证<ID>。", "id_card"),
        (f"id {VALID_ID2.lower()} here", "id <ID> here", "id_card"),
        ("card 4111111111111111 thanks", "card <BANK_CARD> thanks", "bank_card"),
        ("卡号 4111 1111 1111 1111 收到", "卡号 <BANK_CARD> 收到", "bank_card"),
        ("mail john.smith+x@mail.example.co.uk.", "mail <EMAIL>.", "email"),
        ("see https://example.com/a?b=1&c=2, ok", "see <URL>, ok", "url"),
        ("访问baidu.com/s看看", "访问<URL>看看", "url"),
        ("(见 www.qq.com)", "(见 <URL>)", "url"),
        ("server 192.168.1.10.", "server <IP>.", "ip"),
        ("v6 fe80::1ff:fe23:4567:890a ok", "v6 <IP> ok", "ip"),
        ("loopback ::1 and 2001:db8::8a2e:370:7334", "loopback ::1 and <IP>", "ip"),
    ],
)
def test_each_kind_is_redacted_with_its_placeholder(text: str, expected: str, kind: str) -> None:
    out, counts = Redactor({}).apply(text)
    assert out == expected
    assert counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "价格 1999 元，2024年10月4日 11:42，共 3 个",
        "meet at 12:30:45 tomorrow, 3.5 km, v2.0.1",
        "订单号 20241004114210 和 100000",
        "epoch ms 1700000000000",
        "2024-10-04 11:42:10",
        "card 4111111111111112 (bad Luhn)",
        f"{VALID_ID[:17]}{'0' if VALID_ID[17] != '0' else '1'} (bad checksum)",
        "version 1.2.3 and 999.1.1.1",
        "¥ 12,345.67 and +5 points",
        "no digits at all here",
    ],
)
def test_ordinary_numbers_survive(text: str) -> None:
    assert Redactor({}).apply(text) == (text, {})


def test_counts_per_kind_and_several_hits() -> None:
    text = "a 13812345678 b 13912345678 c x@y.com d http://a.cn"
    out, counts = Redactor({}).apply(text)
    assert out == "a <PHONE> b <PHONE> c <EMAIL> d <URL>"
    assert counts == {"phone": 2, "email": 1, "url": 1}


def test_drop_action_drops_the_message_keep_action_leaves_it() -> None:
    assert Redactor({"phone": "drop"}).apply("打13812345678") == (None, {"phone": 1})
    # keep: URLs are not even looked for, so the email inside the text is still redacted
    out, counts = Redactor({"url": "keep"}).apply("see http://a.com or x@y.com")
    assert out == "see http://a.com or <EMAIL>"
    assert counts == {"email": 1}
    everything_kept = Redactor({k: "keep" for k in PLACEHOLDERS})
    assert everything_kept.apply("13812345678 x@y.com") == ("13812345678 x@y.com", {})


def test_settings_object_is_accepted() -> None:
    from persona_studio.settings import PiiArgs

    r = Redactor(PiiArgs(email="drop"))
    assert r.apply("x@y.com")[0] is None
    assert r.apply("13812345678")[0] == "<PHONE>"


def test_validators() -> None:
    assert id_card_ok(VALID_ID) and id_card_ok(VALID_ID2)
    assert not id_card_ok(VALID_ID2[:17] + str((int(VALID_ID2[17]) + 1) % 10) if VALID_ID2[17].isdigit() else "0")
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")


# -- the table -----------------------------------------------------------------------------------


def expected(text: str, secret: str, kind: str) -> str:
    return text.replace(secret, PLACEHOLDERS[kind])


def test_the_table_covers_every_family_and_several_regions() -> None:
    assert len(PII) >= 60 and len(ORDINARY) >= 30
    assert {k for _, _, k in PII} == set(PLACEHOLDERS)
    assert sum(k == "phone" for _, _, k in PII) >= 20 and sum(k == "id_card" for _, _, k in PII) >= 8


@pytest.mark.parametrize(("text", "secret", "kind"), PII, ids=[f"{k}-{i}" for i, (_, _, k) in enumerate(PII)])
def test_pii_shape_is_redacted_whole(text: str, secret: str, kind: str) -> None:
    out, counts = Redactor({}).apply(text)
    assert out == expected(text, secret, kind)
    assert counts == {kind: 1}


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_number_survives(text: str) -> None:
    assert Redactor({}).apply(text) == (text, {})


def test_phone_regions_are_a_setting() -> None:
    uk_only = Redactor({"phone_regions": ["GB"]})
    assert uk_only.apply("office 020 7946 0958")[0] == "office <PHONE>"
    assert uk_only.apply("我的手机13812345678")[0] == "我的手机13812345678"  # a CN national number
    assert uk_only.apply("+86 138 1234 5678")[0] == "<PHONE>"  # international: any region
    assert Redactor({"phone_regions": []}).apply("+86 138 1234 5678")[1] == {}


def test_names_hit_texts_and_drop_kinds_are_redacted_not_dropped() -> None:
    r = Redactor({"phone": "drop"})
    assert r.apply("+44 7911 123456")[0] is None
    assert r.redact("+44 7911 123456") == "<PHONE>"
    assert r.redact("Bob 13812345678") == "Bob <PHONE>"
    turns = r.redact_turns([{"role": "user", "content": "x@y.com", "name": "+44 7911 123456"}])
    assert turns == [{"role": "user", "content": "<EMAIL>", "name": "<PHONE>"}]


# -- the pre-checks: each flags every text the exact check would look at ------------------------

_ALPHABET = list("0123456789１２３٣ +＋-－.．｡:/@＠()（） \u3000abcXYZé中文ｅ#,x") + ["com", "cn", "ly/", "138", "2024"]


def _random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 24))) for _ in range(n)]


def test_numpy_candidates_equal_the_precheck() -> None:
    r = Redactor({})
    texts = [t for t, _, _ in PII] + ORDINARY + _random_texts(4000, seed=3) + ["", "\x00", "a\x00b@"]
    assert r.maybe is not None
    assert r.candidates(texts) == [i for i, t in enumerate(texts) if r.maybe(t)]
    assert all(r.maybe(t) for t, _, _ in PII)


def test_re2_precheck_flags_a_superset() -> None:
    """Arrow's RE2 pre-check of make-dataset flags every text Python's pre-check flags: the
    random texts, the table, and every character of the two translated classes (Python's \\d
    and letters) in a position where only that class makes the match."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from persona_studio.clean.textscan import every_char

    r = Redactor({})
    chars = every_char()
    import re

    digits = re.findall(r"\d", chars)
    letters = re.findall(r"[^\W\d_]", chars)
    texts = ([t for t, _, _ in PII] + ORDINARY + _random_texts(4000, seed=4)
             + [c * 7 for c in digits] + ["x." + c for c in letters])
    flagged = pc.match_substring_regex(pa.array(texts), r.re2_pattern).to_pylist()
    missed = [t for t, f in zip(texts, flagged, strict=True) if r.maybe(t) and not f]
    assert not missed, missed[:5]


# -- through make-dataset and `export dataset`, both paths ---------------------------------------

HEADER = "id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime\n"


def _chat_export(path: Path, texts: list[str], talker: str) -> Path:
    """Each text said by `talker`, then by me: one conversation (10 minutes apart) per text."""
    import csv
    import io
    from datetime import datetime, timedelta

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    t = datetime(2024, 3, 1, 9)
    n = 0
    for text in texts:
        for sender in (0, 1):
            n += 1
            w.writerow([n, 1000 + n, "文本", sender, talker, "", text, "", t.strftime("%Y-%m-%d %H:%M:%S")])
            t += timedelta(seconds=30)
        t += timedelta(minutes=10)
    path.write_text(HEADER + buf.getvalue(), encoding="utf-8")
    return path


@pytest.mark.parametrize("path", ["column", "message"])
def test_table_through_make_dataset_and_export(workspace: Workspace, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    from persona_studio.clean import pipeline
    from tests.test_clean_pipeline import add_persona

    if path == "message":  # chat exports take the column path; the message loop must agree
        monkeypatch.setattr(pipeline, "GENERIC_FORMATS", frozenset({*pipeline.GENERIC_FORMATS, "wechat"}))
    add_persona(workspace, "alice")
    texts = [t for t, _, _ in PII] + ORDINARY
    export = _chat_export(tmp_path / "chat.csv", texts, talker="+44 7911 123456")
    root = str(workspace.root)
    assert main(["import", str(export), "--persona", "alice", "--me", "me", "-w", root]) == 0
    assert main(["make-dataset", "--persona", "alice", "-w", root]) == 0
    out = tmp_path / "alice.jsonl"
    assert main(["export", "dataset", "--persona", "alice", "-o", str(out), "-w", root]) == 0
    raw = out.read_text(encoding="utf-8")
    records = [json.loads(line)["messages"] for line in raw.splitlines()]
    want = [expected(*row) for row in PII] + ORDINARY
    assert [[m["content"] for m in msgs[1:]] for msgs in records] == [[w, w] for w in want]
    assert {m.get("name") for msgs in records for m in msgs if m["role"] == "user"} == {"<PHONE>"}
    for _, secret, _ in PII:
        assert secret not in raw
    assert "7911" not in raw


@pytest.mark.parametrize("settings", ['{make_dataset: {blocked_words: ["mail", "号"]}}',
                                      '{make_dataset: {blocked_words: ["call"], pii: {phone: "drop", url: "keep"}}}'])
def test_both_paths_agree_on_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: str) -> None:
    """Random group and private chats made of the table, speakers named by phone numbers, small
    windows: the column path (RE2 pre-check, then the exact checks) gives byte for byte what
    the message path gives, blocked-word hits (their redacted texts) included."""
    import csv
    from datetime import datetime, timedelta

    from persona_studio.clean import columnar, pipeline
    from persona_studio.clean.pipeline import make_dataset
    from persona_studio.importer import import_files
    from tests.test_clean_columnar import HEADER as COLUMNS
    from tests.test_clean_columnar import snapshot
    from tests.test_clean_pipeline import add_persona

    rng = random.Random(11)
    texts = [t for t, _, _ in PII] + ORDINARY + ["ok", "好的", "mail me"]
    export = tmp_path / "chat.csv"
    t = datetime(2024, 1, 1, 9)
    with export.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for i in range(1, 1500):
            t += timedelta(seconds=rng.choice((10, 100, 200, 400, 3000)))
            room = rng.choice(["", "", "+86 138 1234 5678 群"])
            talker = rng.choice(["+44 7911 123456", "Bob 13812345678", "李四"]) if room else "+44 7911 123456"
            w.writerow([i, i, "文本", int(rng.random() < 0.45), talker, room, rng.choice(texts), "",
                        t.strftime("%Y-%m-%d %H:%M:%S")])
    results = []
    for name, generic in (("msg", frozenset({"wechat"})), ("col", pipeline.GENERIC_FORMATS)):
        ws = Workspace.init(tmp_path / name)
        ws.settings_path.write_text(settings, encoding="utf-8")
        ws = Workspace.open(ws.root)
        add_persona(ws, "p")
        import_files(ws, "p", [export], me="me")
        monkeypatch.setattr(pipeline, "GENERIC_FORMATS", generic)
        monkeypatch.setattr(columnar, "WINDOW", 64)
        results.append(snapshot(ws, make_dataset(ws, "p")))
    msg, col = results
    assert msg["summary"]["redacted"] and msg["hits"] and len(msg["samples"]) > 100
    assert col == msg
    dumped = json.dumps(msg, ensure_ascii=False)
    assert "7911 123456" not in dumped and "13812345678" not in dumped and "138 1234 5678" not in dumped
    assert '{\\"chat\\": \\"<PHONE> 群\\"}' in dumped  # the group's name, redacted in the sample's meta
