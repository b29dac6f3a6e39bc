"""Real shapes beyond the textbook ones: older WeChat CSVs (a JSON `content` column), WeFlow-style
ISO timestamps and English type names, quote replies; QQ 12-hour exports, header-less files
and text copied from the chat window; Discord duplicates; datasets with `value` content parts
and tool calls; cards in PNG iTXt/zTXt chunks. Every sample was written for the project."""

from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from persona_studio.cli import main
from persona_studio.ingest import ReadStats, detect, read
from persona_studio.persona import png
from persona_studio.persona.card import read_card_file
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import add_persona

DATA = Path(__file__).parent / "data" / "ingest"


def ts(*args: int, tz: timezone = UTC) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def load(path: Path, fmt: str = "auto") -> tuple[list, ReadStats]:
    stats = ReadStats()
    return list(read(path, fmt, stats)), stats


def test_wechat_content_json_column() -> None:
    msgs, stats = load(DATA / "wechat_content_json.csv")
    assert (stats.format, stats.read, stats.bad) == ("wechat", 6, 0)
    assert [m.speaker for m in msgs] == ["wxid_lin", "me", "wxid_lin", "wxid_lin", "me", "wxid_lin"]
    assert [m.kind for m in msgs] == ["text", "text", "image", "text", "quote", "text"]
    assert [m.text for m in msgs] == ["周六去爬山吗？", "去！几点？", "图片", "七点，地铁站", "好，不见不散",
                                      "plain text cell"]
    assert msgs[0].ts == ts(2023, 5, 6, 8, 30) and msgs[5].ts == ts(2023, 5, 6, 8, 35)


def test_wechat_iso_times_english_types_and_quotes() -> None:
    msgs, stats = load(DATA / "wechat_iso_english.csv")
    assert (stats.read, stats.bad) == (8, 0)
    assert [m.speaker for m in msgs] == ["Sam", "me", "Sam", "me", "Sam", "Sam", "me", "Sam"]
    assert [m.kind for m in msgs] == ["text", "text", "image", "quote", "quote", "recall", "sticker", "system"]
    assert msgs[3].text == "yes, desk 4"  # the 「quoted」 block above the rule is cut
    assert msgs[4].text == "coffee?"  # so is the [引用] part under the reply
    assert msgs[0].ts == ts(2024, 3, 1, 9, 0)
    assert msgs[1].ts == ts(2024, 3, 1, 17, 1, 30, tz=timezone(timedelta(hours=8)))  # an offset: the true instant
    assert msgs[4].ts == ts(2024, 3, 1, 9, 4) + 0.5
    assert msgs[7].ts == ts(2024, 3, 1, 9, 7)  # a plain wall time in the same file


def test_wechat_quotes_on_the_arrow_path_too(tmp_path: Path) -> None:
    """A big file goes through pyarrow; a chunk with a quote in it still has the quote cut."""
    rows = [f'{i},{i},文本,{i % 2},Sam,,"line {i}",,2024-03-01 09:{i // 60 % 60:02d}:{i % 60:02d}' for i in range(1, 3000)]
    rows[10] = '11,11,引用回复,1,Sam,,"ok!\n[引用]Sam: line 10",,2024-03-01 09:00:11'
    path = tmp_path / "big.csv"
    path.write_text("id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime\n" + "\n".join(rows) + "\n",
                    encoding="utf-8")
    msgs, stats = load(path)
    assert stats.read == 2999 and msgs[10].text == "ok!" and msgs[10].kind == "quote"
    assert msgs[11].text == "line 12" and msgs[2998].text == "line 2999"


QQ_12H = """消息记录（此消息记录为文本格式，不支持重新导入）

================================================================
消息分组:Friends
================================================================
消息对象:Lily
================================================================

2019-09-23 8:43:38 PM Lily(12345)
are you there?

2019-09-23 8:44:02 PM Max Power(67890)
yes, what's up

2019-09-23 12:05:00 AM Lily(12345)
[Image]

2019-09-24 12:30:10 PM PM Fan(24680)
lunch?
"""


def test_qq_twelve_hour_clock(tmp_path: Path) -> None:
    path = tmp_path / "qq.txt"
    path.write_text(QQ_12H, encoding="utf-8")
    msgs, stats = load(path)
    assert (stats.format, stats.read, stats.bad) == ("qq", 4, 0)
    assert [(m.speaker, m.speaker_id) for m in msgs] == [("Lily", "12345"), ("Max Power", "67890"),
                                                         ("Lily", "12345"), ("PM Fan", "24680")]
    assert [m.ts for m in msgs] == [ts(2019, 9, 23, 20, 43, 38), ts(2019, 9, 23, 20, 44, 2),
                                    ts(2019, 9, 23, 0, 5), ts(2019, 9, 24, 12, 30, 10)]
    assert [m.kind for m in msgs] == ["text", "text", "image", "text"]
    assert msgs[1].text == "yes, what's up"


def test_no_placeholder_of_these_shapes_reaches_export_dataset(workspace: Workspace, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    add_persona(workspace, "p")
    root = str(workspace.root)
    qq = tmp_path / "qq.txt"
    qq.write_text(QQ_12H, encoding="utf-8")
    for path, me in ((DATA / "wechat_content_json.csv", "me"), (DATA / "wechat_iso_english.csv", "me"), (qq, "Lily")):
        assert main(["import", str(path), "--persona", "p", "--me", me, "-w", root]) == 0
    assert main(["make-dataset", "--persona", "p", "-w", root]) == 0
    out = tmp_path / "o.jsonl"
    assert main(["export", "dataset", "--persona", "p", "-o", str(out), "-w", root]) == 0
    capsys.readouterr()
    turns = [m["content"] for line in out.read_text(encoding="utf-8").splitlines()
             for m in json.loads(line)["messages"] if m["role"] != "system"]
    said = {x for t in turns for x in t.split("\n")}
    assert {"去！几点？", "好，不见不散", "yes, desk 4", "are you there?"} <= said
    for placeholder in ("图片", "[Image]", "[Sticker]", "recalled", "You added", "[引用]", "「", "- - -", '"msg"'):
        assert not any(placeholder in t for t in turns), placeholder


def test_qq_without_the_header_block(tmp_path: Path) -> None:
    path = tmp_path / "cut.txt"
    path.write_text("2024-02-01 下午3:00:00 阿杰(12345678)\n到了吗\n\n2024-02-01 15:01:10 小雨(87654321)\n马上\n",
                    encoding="utf-8")
    assert detect(path) == "qq"
    msgs, stats = load(path)
    assert [(m.speaker, m.text, m.ts) for m in msgs] == [("阿杰", "到了吗", ts(2024, 2, 1, 15)),
                                                         ("小雨", "马上", ts(2024, 2, 1, 15, 1, 10))]


def test_qq_text_copied_from_the_chat_window(tmp_path: Path) -> None:
    path = tmp_path / "copied.txt"
    path.write_text("阿杰 2024/2/1 20:00:01\n晚上吃什么\n火锅？\n小雨 20:01:30\n好\n\n阿杰 2024/2/2 9:15:00\n早\n",
                    encoding="utf-8")
    assert detect(path) == "qq"
    msgs, stats = load(path)
    assert (stats.read, stats.bad) == (3, 0)
    assert [(m.speaker, m.text, m.ts) for m in msgs] == [
        ("阿杰", "晚上吃什么\n火锅？", ts(2024, 2, 1, 20, 0, 1)),
        ("小雨", "好", ts(2024, 2, 1, 20, 1, 30)),  # a time-only line takes the last date
        ("阿杰", "早", ts(2024, 2, 2, 9, 15)),
    ]


def test_discord_duplicate_ids_imported_once(tmp_path: Path) -> None:
    def msg(i: int, text: str) -> dict:
        return {"id": str(1200 + i), "type": "Default", "timestamp": f"2024-03-01T09:0{i}:00+00:00", "content": text,
                "author": {"id": "77", "name": "kes"}, "attachments": [], "stickers": []}

    export = {"guild": {"name": "G"}, "channel": {"name": "c"},
              "messages": [msg(1, "one"), msg(2, "two"), msg(1, "one"), msg(3, "three"), msg(2, "two")]}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    msgs, stats = load(path)
    assert [m.text for m in msgs] == ["one", "two", "three"]
    assert stats.read == 3 and stats.skipped_kinds == {"duplicate_id": 2}
    assert [m.ts for m in msgs] == [ts(2024, 3, 1, 9, i) for i in (1, 2, 3)]


def test_dataset_content_parts_with_value(tmp_path: Path) -> None:
    path = tmp_path / "parts.jsonl"
    path.write_text(
        json.dumps({"messages": [
            {"role": "user", "content": [{"type": "text", "value": "Tell me a riddle."}]},
            {"role": "assistant", "content": [{"value": "What has keys"}, {"type": "text", "value": "but no locks?"}]},
        ]}) + "\n"
        + json.dumps({"messages": [
            {"role": "user", "content": [{"type": "text", "text": "And the answer?"},
                                         {"type": "image_url", "image_url": {"url": "x.png"}}]},
            {"role": "assistant", "content": "A piano."}]}) + "\n",
        encoding="utf-8",
    )
    msgs, stats = load(path)
    assert (stats.format, stats.read, stats.bad) == ("openai", 4, 0)
    assert [(m.conv, m.role, m.text) for m in msgs] == [
        (0, "user", "Tell me a riddle."), (0, "assistant", "What has keys\nbut no locks?"),
        (1, "user", "And the answer?"), (1, "assistant", "A piano.")]


def test_tool_call_conversations_are_skipped_and_counted(workspace: Workspace, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "hello"}, {"from": "gpt", "value": "hi there"}]},
        {"conversations": [{"from": "human", "value": "weather?"}, {"from": "function_call", "value": "{}"},
                           {"from": "observation", "value": "{\"t\": 3}"}, {"from": "gpt", "value": "It is 3 degrees."}]},
        {"conversations": [{"from": "human", "value": "time?"},
                           {"from": "gpt", "value": "", "tool_calls": [{"name": "clock"}]},
                           {"from": "gpt", "value": "Noon."}]},
    ]), encoding="utf-8")
    msgs, stats = load(path)
    assert [m.text for m in msgs] == ["hello", "hi there"] and stats.skipped_kinds == {"tool_calls": 2}
    add_persona(workspace, "p")
    root = str(workspace.root)
    assert main(["import", str(path), "--persona", "p", "--json", "-w", root]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["skipped_kinds"] == {"tool_calls": 2}
    assert main(["make-dataset", "--persona", "p", "-w", root]) == 0
    out = tmp_path / "o.jsonl"
    assert main(["export", "dataset", "--persona", "p", "-o", str(out), "-w", root]) == 0
    text = out.read_text(encoding="utf-8")
    assert "hi there" in text and "degrees" not in text and "Noon" not in text


def png_with(chunk_type: bytes, data: bytes) -> bytes:
    base = png.default_image("x", size=4)
    iend = base.rindex(b"IEND") - 4
    return base[:iend] + png._chunk(chunk_type, data) + base[iend:]


CARD = {"spec": "chara_card_v2", "spec_version": "2.0",
        "data": {"name": "Zoë", "description": "Draws maps.", "extensions": {"x": {"keep": 1}}}}


@pytest.mark.parametrize("compressed", [False, True])
def test_card_in_an_itxt_chunk(tmp_path: Path, compressed: bool) -> None:
    text = base64.b64encode(json.dumps(CARD, ensure_ascii=False).encode("utf-8"))
    body = zlib.compress(text) if compressed else text
    path = tmp_path / "card.png"
    path.write_bytes(png_with(b"iTXt", b"chara\0" + bytes([int(compressed), 0]) + b"en\0chara\0" + body))
    card = read_card_file(path)
    assert card["data"]["name"] == "Zoë" and card["data"]["extensions"] == {"x": {"keep": 1}}


def test_card_in_a_ztxt_chunk_and_a_bomb_refused(tmp_path: Path) -> None:
    text = base64.b64encode(json.dumps(CARD).encode("utf-8"))
    path = tmp_path / "z.png"
    path.write_bytes(png_with(b"zTXt", b"ccv3\0\0" + zlib.compress(text)))
    assert read_card_file(path)["data"]["name"] == "Zoë"
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_with(b"iTXt", b"chara\0\x01\0\0\0" + zlib.compress(b"A" * (64 << 20))))
    with pytest.raises(png.PngError, match="inflates past"):
        read_card_file(bomb)


def test_persona_import_of_an_itxt_card(workspace: Workspace, tmp_path: Path) -> None:
    text = base64.b64encode(json.dumps(CARD, ensure_ascii=False).encode("utf-8"))
    path = tmp_path / "card.png"
    path.write_bytes(png_with(b"iTXt", b"chara\0\0\0\0\0" + text))
    assert main(["persona", "import", str(path), "--id", "zoe", "--no-index", "-w", str(workspace.root)]) == 0
    assert "zoe" in workspace.persona_ids()


def test_wechatmsg_csv_with_wechats_own_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """WeChatMsg / MemoTrace export WeChat's message table: numeric Type/SubType, Unix
    CreateTime, IsSender, StrContent (a quote reply's XML), Remark/NickName/Sender."""
    path = DATA / "wechatmsg.csv"
    assert detect(path) == "wechat"
    msgs, stats = load(path)
    assert (stats.read, stats.bad) == (10, 1) and stats.bad_examples == [f"{path}:11: bad IsSender '2'"]
    first, mine, image, sticker, quote, pat, recall, two_lines, file, call = msgs
    assert (first.speaker, first.speaker_id, first.ts) == ("小林", "wxid_lin01", ts(2024, 1, 1, 4, 0))
    assert (mine.speaker, mine.speaker_id, mine.text) == ("me", "is_sender:1", "好呀，我订票")
    assert [m.kind for m in (image, sticker, pat, recall, file, call)] == ["image", "sticker", "system", "recall",
                                                                          "file", "other"]
    assert (quote.kind, quote.text) == ("quote", "就这家，电话 13800138000")  # the quoted 哪家酒店？ is not kept
    assert two_lines.text == "第一行\n第二行"
    ws = Workspace.init(tmp_path / "ws")
    add_persona(ws, "lin")
    assert main(["-w", str(ws.root), "import", str(path), "--persona", "lin", "--me", "me"]) == 0
    assert main(["-w", str(ws.root), "make-dataset", "--persona", "lin", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["redacted"] == {"phone": 1} and out["samples"]["total"] >= 1


def test_a_csv_without_strcontent_is_not_taken_for_wechatmsg(tmp_path: Path) -> None:
    bad = tmp_path / "w.csv"
    bad.write_text("localId,TalkerId,Type,IsSender,CreateTime,StrTime\n1,wxid_a,1,0,1704081600,2024-01-01 12:00:00\n",
                   encoding="utf-8")
    with pytest.raises(Exception, match="unknown format"):  # without StrContent it is no WeChatMsg CSV
        detect(bad)
