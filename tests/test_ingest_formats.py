"""Each importer against a realistic sample export (tests/data/ingest)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from persona_studio.ingest import FORMATS, ReadStats, detect, read, speakers

DATA = Path(__file__).parent / "data" / "ingest"


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def load(name: str, fmt: str = "auto") -> tuple[list, ReadStats]:
    stats = ReadStats()
    return list(read(DATA / name, fmt, stats)), stats


def test_formats_tuple_is_the_contract() -> None:
    assert FORMATS == ("wechat", "telegram", "whatsapp", "qq", "discord",
                       "openai", "sharegpt", "alpaca", "chatglm", "sillytavern", "dpo", "kto")


@pytest.mark.parametrize(("name", "fmt"), [
    ("wechat_private.csv", "wechat"), ("wechat_group_gbk.csv", "wechat"),
    ("telegram_single.json", "telegram"), ("telegram_full.json", "telegram"),
    ("whatsapp_android.txt", "whatsapp"), ("whatsapp_ios.txt", "whatsapp"),
    ("whatsapp_utf16.txt", "whatsapp"), ("whatsapp_utf16_nobom.txt", "whatsapp"),
    ("qq_history.txt", "qq"), ("discord_channel.json", "discord"),
    ("openai_chat.jsonl", "openai"), ("sharegpt.json", "sharegpt"), ("alpaca.json", "alpaca"),
    ("chatglm.jsonl", "chatglm"), ("sillytavern.jsonl", "sillytavern"),
])
def test_detect_by_content(name: str, fmt: str) -> None:
    assert detect(DATA / name) == fmt


def test_detect_ignores_misleading_extensions(tmp_path: Path) -> None:
    shutil.copy(DATA / "whatsapp_android.txt", tmp_path / "chat.log")
    shutil.copy(DATA / "telegram_single.json", tmp_path / "export.txt")
    shutil.copy(DATA / "wechat_private.csv", tmp_path / "messages.json")
    assert detect(tmp_path / "chat.log") == "whatsapp"
    assert detect(tmp_path / "export.txt") == "telegram"
    assert detect(tmp_path / "messages.json") == "wechat"
    assert len(list(read(tmp_path / "export.txt"))) == 8


def test_wechat_private_chat() -> None:
    msgs, stats = load("wechat_private.csv")
    assert (stats.format, stats.encoding, stats.read, stats.bad) == ("wechat", "utf-8", 12, 1)
    assert stats.bad_examples == [f"{DATA / 'wechat_private.csv'}:12: bad CreateTime '昨天下午'"]
    first, mine = msgs[0], msgs[1]
    assert (first.speaker, first.speaker_id, first.chat, first.kind) == ("wxid_alice", "wxid_alice", "wxid_alice", "text")
    assert first.ts == ts(2024, 10, 4, 11, 42)
    assert (mine.speaker, mine.speaker_id, mine.meta["is_sender"]) == ("me", "is_sender:1", 1)
    assert msgs[2].text == "晚上一起吃饭吗\n我知道一家新开的火锅店\n就在公司楼下"
    assert [m.kind for m in msgs[3:]] == ["sticker", "text", "image", "quote", "voice", "recall", "system", "other", "forward"]
    assert msgs[6].text == "七点吧"  # a quote keeps its text
    assert msgs[4].ts == ts(2024, 10, 4, 11, 46, 10)
    assert msgs[9].ts == 1728042660.0  # unix seconds accepted
    assert msgs[10].meta["type_name"] == "位置"
    assert msgs[11].text == '他说："好的,没问题"' and msgs[11].meta["is_forward"] == 1


def test_wechat_group_in_gbk_with_crlf() -> None:
    msgs, stats = load("wechat_group_gbk.csv")
    assert stats.encoding == "gb18030" and stats.bad == 0
    assert {m.chat for m in msgs} == {"12345678@chatroom"}
    assert msgs[0].kind == "system" and msgs[0].text == '你邀请"老王"加入了群聊'
    assert msgs[3].speaker == "me" and msgs[3].text == "欢迎老王\n以后周末一起打球"
    assert msgs[4].kind == "file" and msgs[6].kind == "video"


def test_speakers_most_first_ties_in_first_seen_order() -> None:
    assert speakers(DATA / "wechat_group_gbk.csv") == [
        ("wxid_laowang", 3), ("wxid_xiaoli", 2), ("me", 2), ("wxid_owner", 1),
    ]


def test_telegram_single_chat() -> None:
    msgs, stats = load("telegram_single.json")
    assert (stats.read, stats.bad) == (8, 1)
    assert "message 8: id 108:" in stats.bad_examples[0]
    assert {m.chat for m in msgs} == {"Anna Petrova"}
    call, hello, reply, photo, sticker, voice, fwd, deleted = msgs
    assert call.kind == "system" and call.speaker == "Anna Petrova"
    assert hello.ts == 1672920001.0 and hello.speaker_id == "user4815162342"
    assert reply.text == "Yes! Look at https://example.org/aurora — and it was green\nall night long."
    assert reply.meta["reply_to_message_id"] == 102
    assert (photo.kind, photo.text) == ("image", "from the balcony")
    assert (sticker.kind, sticker.meta["sticker_emoji"]) == ("sticker", "😍")
    assert voice.kind == "voice"
    assert (fwd.kind, fwd.meta["forwarded_from"]) == ("forward", "Space News")  # not the persona's words
    # No date_unixtime: the naive ISO date is read as UTC; `from: null` falls back to the id.
    assert deleted.ts == ts(2023, 1, 5, 12, 10) and deleted.speaker == "user999"


def test_telegram_full_export_names_every_chat() -> None:
    msgs, stats = load("telegram_full.json")
    assert stats.read == 5
    assert [(m.chat, m.text) for m in msgs[1:]] == [
        ("Book Club", "First book: Solaris?"), ("Book Club", "Agreed."),
        ("", "note to self: buy milk"),  # saved messages have no name; must not inherit "Book Club"
        ("Old Channel", "Happy new year!"),
    ]


def test_whatsapp_android_us() -> None:
    msgs, stats = load("whatsapp_android.txt")
    assert (stats.read, stats.bad) == (11, 0)
    assert msgs[0].kind == "system" and msgs[0].speaker == ""
    assert msgs[1].ts == ts(2023, 12, 31, 21, 41)
    assert msgs[2].text == "Yes! Bringing snacks.\nAlso the good speaker\nand a blanket for the balcony"
    assert [m.kind for m in msgs[3:5]] == ["file", "recall"]
    assert msgs[5].text == "See you at 11 then" and msgs[5].meta["edited"] is True
    assert msgs[6].ts == ts(2024, 1, 1, 0, 1)  # 12:01 AM
    assert msgs[7].kind == "image"
    assert (msgs[8].speaker, msgs[8].text) == ("Maria", "the fireworks: they were huge")
    assert (msgs[9].kind, msgs[9].text) == ("system", "Tom changed the group description")
    assert msgs[10].ts == ts(2024, 1, 2, 10, 0)  # month-first: 1/2/24 is January 2nd


def test_whatsapp_ios_marks_and_media() -> None:
    msgs, _ = load("whatsapp_ios.txt")
    assert [m.kind for m in msgs] == ["system", "system", "text", "text", "image", "image", "voice",
                                      "recall", "text", "text"]
    assert msgs[3].speaker == "+49 151 2345678"  # U+202A/U+202C around the number removed
    assert msgs[3].text == "me, obviously\nstill working on the slides"
    assert msgs[3].ts == ts(2023, 12, 31, 21, 41, 30)
    assert msgs[9].ts == ts(2024, 1, 1, 0, 0, 1) and msgs[9].text == "Frohes neues Jahr!"
    assert all("\u200e" not in m.text and "\u200e" not in m.speaker for m in msgs)


@pytest.mark.parametrize(("name", "encoding"), [("whatsapp_utf16.txt", "utf-16"),
                                                ("whatsapp_utf16_nobom.txt", "utf-16-be")])
def test_whatsapp_utf16(name: str, encoding: str) -> None:
    msgs, stats = load(name)
    assert stats.encoding == encoding
    assert [m.speaker for m in msgs] == ["Ahmed", "Sofia", "Ahmed", "Sofia"]
    assert msgs[0].text == "مرحبا! كل عام وأنتم بخير"
    assert msgs[1].text == "Feliz año nuevo 🎆\n¡Nos vemos mañana!"
    assert msgs[2].ts == ts(2024, 1, 1, 9, 5)  # day-first: 4-digit year, and 31/12 settles it


def test_whatsapp_day_order_settled_by_a_later_line(tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_text("1/2/24, 10:00 - Ana: early line, ambiguous\n"
                    "13/2/24, 10:00 - Ana: this one settles it: day first\n", encoding="utf-8")
    msgs = list(read(path))
    assert msgs[0].ts == ts(2024, 2, 1, 10, 0)
    assert msgs[1].ts == ts(2024, 2, 13, 10, 0)


def test_qq_text_export() -> None:
    msgs, stats = load("qq_history.txt")
    assert (stats.read, stats.bad) == (8, 0)
    assert [m.chat for m in msgs] == ["阿杰"] * 6 + ["登山社"] * 2
    assert (msgs[0].speaker, msgs[0].speaker_id, msgs[0].ts) == ("阿杰", "12345678", ts(2024, 1, 5, 12, 0, 1))
    assert msgs[1].text == "去！\n几点出发？\n\n我得先把猫喂了"
    assert msgs[2].kind == "image"
    assert msgs[3].text == "早上七点，地铁站见\n2024-01-05 这行虽然以日期开头但属于上一条消息"
    assert msgs[4].kind == "recall"
    assert (msgs[5].speaker, msgs[5].speaker_id) == ("小雨", "xiaoyu@qq.com")
    assert msgs[7].kind == "sticker"


def test_discord_export() -> None:
    msgs, stats = load("discord_channel.json")
    assert (stats.read, stats.bad) == (6, 1)
    assert "missing 'timestamp'" in stats.bad_examples[0]
    assert {m.chat for m in msgs} == {"Pixel Painters / Community / general"}
    assert [m.kind for m in msgs] == ["system", "text", "text", "image", "sticker", "text"]
    assert (msgs[1].speaker, msgs[1].speaker_id) == ("Kes", "1000000000000000001")  # nickname wins
    assert msgs[1].ts == pytest.approx(ts(2024, 3, 1, 9, 1) + 0.123)
    assert msgs[2].speaker == "mossy" and msgs[2].ts == ts(2024, 3, 1, 9, 1, 30)  # +01:00 honoured
    assert msgs[2].meta["reply_to"] == "1100000000000000002"
    assert msgs[5].meta["is_bot"] is True


def test_openai_jsonl_bad_lines_are_counted_not_fatal() -> None:
    msgs, stats = load("openai_chat.jsonl")
    assert stats.read == 5 and stats.bad == 3
    assert stats.bad_examples[0] == f"{DATA / 'openai_chat.jsonl'}:3: bad JSON (Expecting ',' delimiter)"
    # the tool conversation is skipped whole: its answer cites tool output the model won't see
    assert stats.skipped_kinds == {"tool_calls": 1}
    assert [(m.conv, m.role) for m in msgs] == [(0, "system"), (0, "user"), (0, "assistant"), (1, "user"),
                                                (1, "assistant")]
    assert msgs[4].speaker == "Mira"
    assert msgs[4].text == "Keep your eyes on the horizon\nand your hands off the red lever."
    assert all(m.ts is None and m.kind == "text" for m in msgs)


def test_sharegpt_json() -> None:
    msgs, stats = load("sharegpt.json")
    assert stats.bad == 1 and stats.bad_examples[0].endswith("sharegpt.json:record 3: a turn lacks 'from' or 'value'")
    assert stats.skipped_kinds == {"tool_calls": 1}
    assert [(m.conv, m.role) for m in msgs] == [(0, "system"), (0, "user"), (0, "assistant"), (0, "user"),
                                                (0, "assistant")]
    assert msgs[2].text == "Forty winters.\nMaybe forty-one."


def test_sharegpt_as_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}\n'
                    '{"conversations": [{"from": "human", "value": "bye"}, {"from": "gpt", "value": "ciao"}]}\n')
    assert [(m.conv, m.role, m.text) for m in read(path)] == [
        (0, "user", "hi"), (0, "assistant", "yo"), (1, "user", "bye"), (1, "assistant", "ciao")]


def test_alpaca_with_history_and_system() -> None:
    msgs, stats = load("alpaca.json")
    assert stats.bad == 1
    assert [(m.conv, m.role) for m in msgs[:3]] == [(0, "system"), (0, "user"), (0, "assistant")]
    second = [m for m in msgs if m.conv == 1]
    assert [m.text for m in second][:2] == ["今天天气如何？", "阴阴的，倒像要下雨。"]
    assert second[-2].text == "这首诗写得怎么样？\n花谢花飞花满天"  # instruction + input
    assert second[-1].role == "assistant"


def test_chatglm_all_shapes() -> None:
    msgs, stats = load("chatglm.jsonl")
    assert stats.skipped_kinds == {"tool_calls": 1}
    assert sorted({m.conv for m in msgs}) == [0, 1, 2]
    assert [(m.role, m.text) for m in msgs if m.conv == 1] == [("user", "2是质数吗？"), ("assistant", "是的，2是唯一的偶质数。")]
    assert [m.text for m in msgs if m.conv == 2] == ["0是质数吗？", "也不是。", "1是质数吗？", "不是。"]


def test_chatglm_file_also_reads_as_sharegpt() -> None:
    # ChatGLM's role/content conversations are a ShareGPT variant; an explicit choice works.
    msgs, _ = load("chatglm.jsonl", "sharegpt")
    assert msgs[1].role == "user" and msgs[1].text == "什么是质数？"


def test_sillytavern_chat() -> None:
    msgs, stats = load("sillytavern.jsonl")
    assert stats.skipped_kinds == {"metadata": 1} and stats.bad == 1
    assert [(m.speaker, m.role) for m in msgs] == [("Seraphina", "assistant"), ("Alex", "user"),
                                                   ("Seraphina", "assistant"), ("System", "system")]
    assert {m.chat for m in msgs} == {"Seraphina"} and {m.conv for m in msgs} == {0}
    assert msgs[0].ts == ts(2024, 1, 5, 12, 0) and msgs[1].ts == ts(2024, 1, 5, 12, 1)
    assert msgs[2].ts == ts(2024, 1, 5, 12, 2) and msgs[3].ts == ts(2024, 1, 5, 12, 3)
    assert msgs[0].meta["swipes"] == 2


def test_telegram_full_export_with_a_long_preamble(tmp_path: Path) -> None:
    # Real account exports put contacts (often tens of KB) before "chats": detection and the
    # chat names must not depend on "chats" appearing in the first few KB.
    doc = json.loads((DATA / "telegram_full.json").read_text(encoding="utf-8"))
    contacts = [{"first_name": f"Friend {i}", "last_name": "", "phone_number": f"+1 555 {i:04d}",
                 "date": "2020-01-01T00:00:00"} for i in range(600)]
    doc = {"about": doc["about"], "personal_information": doc["personal_information"],
           "contacts": {"about": "contacts", "list": contacts}, "chats": doc["chats"], "left_chats": doc["left_chats"]}
    path = tmp_path / "result.json"
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    assert path.stat().st_size > 60_000
    assert detect(path) == "telegram"
    assert [m.chat for m in read(path)] == ["Book Club"] * 3 + ["", "Old Channel"]


@pytest.mark.parametrize(("line", "expected"), [
    ("12/31/23, 9:41\u202fPM - Ana: narrow no-break space before PM", ts(2023, 12, 31, 21, 41)),
    ("31/12/2023, 9:41 p.m. - Ana: dotted pm", ts(2023, 12, 31, 21, 41)),
    ("31.12.23, 21:41 - Ana: German dotted date", ts(2023, 12, 31, 21, 41)),
    ("2023-12-31, 21:41 - Ana: year first", ts(2023, 12, 31, 21, 41)),
    ("[12/31/23, 9:41:05 PM] Ana: US iPhone", ts(2023, 12, 31, 21, 41, 5)),
])
def test_whatsapp_locale_variants(tmp_path: Path, line: str, expected: float) -> None:
    path = tmp_path / "chat.txt"
    path.write_text(line + "\n", encoding="utf-8")
    (msg,) = read(path, "whatsapp")
    assert (msg.ts, msg.speaker, msg.kind) == (expected, "Ana", "text")


def test_whatsapp_system_event_with_a_colon_is_not_a_speaker(tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_text('12/30/23, 9:00 PM - Tom: hi all\n'
                    '12/30/23, 9:01 PM - Tom changed the subject from "Party" to "Party: 2024"\n'
                    '12/30/23, 9:02 PM - Maria added Li: welcome\n'
                    '12/30/23, 9:03 PM - Tom: ok\n', encoding="utf-8")
    msgs = list(read(path))
    assert [(m.speaker, m.kind) for m in msgs] == [("Tom", "text"), ("", "system"), ("", "system"), ("Tom", "text")]
    assert msgs[1].text == 'Tom changed the subject from "Party" to "Party: 2024"'
