"""Telegram Desktop's HTML export (its export dialog's default): pages, joined groups, media,
forwards, replies, notices, time zones. The samples in data/ingest/telegram_html/ are written
by hand in the layout Telegram Desktop writes."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from persona_studio.cli import main
from persona_studio.ingest import ImportError_, ReadStats, detect, read, speakers
from persona_studio.ingest.common import wall_ts
from persona_studio.ingest.telegram_html import parse_date
from persona_studio.workspace import Workspace

DATA = Path(__file__).parent / "data" / "ingest" / "telegram_html"
MSK = timezone(timedelta(hours=3))


def load(path: Path) -> tuple[list, ReadStats]:
    stats = ReadStats()
    return list(read(path, stats=stats)), stats


def test_a_chat_reads_across_its_pages_with_senders_media_and_notices() -> None:
    msgs, stats = load(DATA / "messages.html")
    assert stats.format == "telegram"
    assert (stats.read, stats.bad) == (9, 1)
    assert stats.bad_examples == [f"{DATA / 'messages2.html'}:message 49: no date"]
    assert {m.chat for m in msgs} == {"Tea Club"}
    invited, aurora, stayed, reply, sticker, photo, fwd, voice, morning = msgs
    # a notice has no time of its own: the day separator before it gives its day
    assert (invited.kind, invited.speaker, invited.text) == ("system", "", "Ben Okafor invited Anna Petrova")
    assert invited.ts == wall_ts(2023, 1, 5)
    assert aurora.speaker == "Anna Petrova"
    assert aurora.ts == datetime(2023, 1, 5, 12, 0, 1, tzinfo=MSK).timestamp()
    assert aurora.text == "Did you see the aurora last night?\nIt was green & pink, like in this photo"
    assert (stayed.speaker, stayed.text) == ("Anna Petrova", "I stayed up until 3 <3")  # joined: same sender
    assert reply.speaker == "Ben Okafor" and reply.meta["reply_to_message_id"] == "41"
    assert reply.text == "No! I was asleep. Call me next time: +44 7700 900123"  # not "In reply to this message"
    assert (sticker.kind, sticker.speaker, sticker.text) == ("sticker", "Ben Okafor", "")
    assert (photo.kind, photo.text) == ("image", "here, from my balcony")
    assert (fwd.speaker, fwd.kind, fwd.text, fwd.meta["forwarded_from"]) == (
        "Anna Petrova", "forward", "Strong geomagnetic storm tonight.", "Space Weather")  # not her words
    assert (voice.kind, voice.speaker) == ("voice", "Ben Okafor")  # not "Ben Okafor via @gif"
    assert morning.text == "Good morning ☀️\n\nTea at five?"  # from messages2.html
    assert speakers(DATA / "messages.html") == [("Anna Petrova", 5), ("Ben Okafor", 3)]


def test_dates_with_and_without_a_zone() -> None:
    assert parse_date("05.01.2023 12:00:01 UTC-05:00") == datetime(2023, 1, 5, 17, 0, 1, tzinfo=UTC).timestamp()
    assert parse_date(" 31.12.2019 23:59:59 ") == wall_ts(2019, 12, 31, 23, 59, 59)  # older exports: no zone
    with pytest.raises(ValueError, match="not DD.MM.YYYY"):
        parse_date("2023-01-05 12:00")


def test_a_later_page_is_refused_beside_the_first_and_read_alone_without_it(tmp_path: Path) -> None:
    with pytest.raises(ImportError_, match=r"messages2.html: a later page of .*messages.html, which is read with it"):
        read(DATA / "messages2.html")
    alone = tmp_path / "messages2.html"
    shutil.copy(DATA / "messages2.html", alone)
    msgs, stats = load(alone)
    assert [m.text for m in msgs] == ["Good morning ☀️\n\nTea at five?"] and stats.bad == 1


def test_format_name_and_unknown_files() -> None:
    assert detect(DATA / "messages.html") == "telegram"
    assert len(list(read(DATA / "messages.html", "telegram"))) == 9
    with pytest.raises(ImportError_, match="Telegram JSON/HTML"):
        detect(Path(__file__).parent / "data" / "ingest" / "notes_unknown.txt")


def test_a_group_continued_from_another_file_is_a_bad_record_not_a_made_up_sender(tmp_path: Path) -> None:
    page = tmp_path / "chat.html"
    page.write_text((DATA / "messages.html").read_text(encoding="utf-8").replace(
        '<div class="message default clearfix" id="message41">', '<div class="message default clearfix joined" '
        'id="message41">').replace("Anna Petrova\n       </div>", "</div>", 1), encoding="utf-8")
    msgs, stats = load(page)
    assert stats.bad == 2 and "message 41: no sender" in stats.bad_examples[0]
    assert "message 42: no sender" in stats.bad_examples[1]  # nor for the rest of that group
    assert [m.speaker for m in msgs if m.kind != "system"][0] == "Ben Okafor"


def test_import_and_dataset_from_an_html_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = Workspace.init(tmp_path / "ws")
    assert main(["-w", str(ws.root), "import", str(DATA / "messages.html"), "--me", "Anna Petrova",
                 "--persona", "anna", "--create", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"][0]["format"] == "telegram" and summary["files"][0]["read"] == 9
    assert main(["-w", str(ws.root), "make-dataset", "--persona", "anna", "--json"]) == 0
    ds = json.loads(capsys.readouterr().out)
    assert ds["samples"]["total"] == 2 and ds["redacted"] == {"phone": 1}
    assert ds["messages"]["skipped"]["non_text:forward"] == 1  # the forwarded post is no training text
