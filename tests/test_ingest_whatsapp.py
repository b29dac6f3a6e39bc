"""WhatsApp exports as phones write them: 12 languages, ZIP archives, clocks and calendars,
invisible marks. The samples in tests/data/ingest/whatsapp_locales were written for the project:
one chat per language with the encryption notice, speech, a media placeholder, a deleted
message, a missed call, an edited message, a location and a photo with a caption."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from persona_studio.cli import main
from persona_studio.ingest import ImportError_, ReadStats, detect, read
from persona_studio.workspace import Workspace
from tests.test_clean_pipeline import add_persona

LOCALES = Path(__file__).parent / "data" / "ingest" / "whatsapp_locales"
LANGS = ["en", "de", "es", "fr", "pt", "it", "nl", "ru", "cs", "zh", "ja", "ar"]
IOS = {"fr", "it", "ru", "ja"}  # the others are Android exports
# (first speaker, second speaker, the three things people said, the media placeholder's kind)
SPEECH = {
    "en": ("Ann", "Ben", ["Are you still up?", "yes, finishing the book", "look at the fireworks"], "file"),
    "de": ("Anna", "Ben", ["Bist du noch wach?", "ja, ich lese noch", "schau dir das Feuerwerk an"], "file"),
    "es": ("Ana", "Beto", ["¿Sigues despierta?", "sí, leyendo todavía", "mira los fuegos artificiales"], "file"),
    "fr": ("Amélie", "Bruno", ["Tu dors ?", "non, je lis encore", "regarde le feu d'artifice"], "image"),
    "pt": ("Paula", "Rui", ["Ainda acordado?", "sim, ainda lendo", "olha os fogos"], "file"),
    "it": ("Giulia", "Bruno", ["Sei ancora sveglio?", "sì, sto leggendo", "guarda i fuochi"], "image"),
    "nl": ("Sanne", "Daan", ["Ben je nog wakker?", "ja, ik lees nog", "kijk naar het vuurwerk"], "file"),
    "ru": ("Аня", "Борис", ["Ты ещё не спишь?", "нет, читаю", "смотри, салют"], "image"),
    "cs": ("Jana", "Petr", ["Ještě nespíš?", "ne, ještě čtu", "podívej na ohňostroj"], "file"),
    "zh": ("小美", "阿强", ["你还没睡吗？", "还在看书", "看烟花"], "file"),
    "ja": ("花子", "健", ["まだ起きてる？", "うん、まだ読んでる", "花火見て"], "image"),
    "ar": ("ليلى", "سامي", ["هل ما زلت مستيقظاً؟", "نعم، ما زلت أقرأ", "انظر إلى الألعاب النارية"], "file"),
}


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def load(path: Path) -> tuple[list, ReadStats]:
    stats = ReadStats()
    return list(read(path, "auto", stats)), stats


@pytest.mark.parametrize("lang", LANGS)
def test_every_locale(lang: str) -> None:
    msgs, stats = load(LOCALES / f"{lang}.txt")
    a, b, said, media = SPEECH[lang]
    assert (stats.format, stats.read, stats.bad) == ("whatsapp", 8, 0)
    assert [m.kind for m in msgs] == ["system", "text", media, "recall", "system", "text", "other", "text"]
    assert [m.speaker for m in msgs] == ["", a, b, a, b, b, a, b]  # the notice has no speaker
    assert [m.text for m in msgs if m.kind == "text"] == said
    assert msgs[5].meta == {"edited": True}
    assert msgs[7].meta == {"media": "image"}  # the photo's caption is kept as speech
    second = 5 if lang in IOS else 0
    assert msgs[1].ts == ts(2023, 12, 31, 21, 41, second)
    assert msgs[7].ts == ts(2023, 12, 31, 21, 47, second)
    assert all(not m.text.startswith(("\u200e", "\u200f")) for m in msgs)


def test_no_placeholder_reaches_the_exported_dataset(workspace: Workspace, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    add_persona(workspace, "p")
    for lang in LANGS:
        me = SPEECH[lang][1]
        assert main(["import", str(LOCALES / f"{lang}.txt"), "--persona", "p", "--me", me, "-w",
                     str(workspace.root)]) == 0
    assert main(["make-dataset", "--persona", "p", "-w", str(workspace.root)]) == 0
    out = tmp_path / "d.jsonl"
    assert main(["export", "dataset", "--persona", "p", "-o", str(out), "-w", str(workspace.root)]) == 0
    capsys.readouterr()
    contents = [m["content"] for line in out.read_text(encoding="utf-8").splitlines()
                for m in json.loads(line)["messages"] if m["role"] != "system"]
    # Exactly the speech (one person's quick messages are joined into one turn): every said
    # line is there, nothing else is.
    lines = [x for c in contents for x in c.split("\n")]
    assert sorted(lines) == sorted(x for lang in LANGS for x in SPEECH[lang][2])
    placeholders = [line.split(": ", 1)[-1] for lang in LANGS
                    for line in (LOCALES / f"{lang}.txt").read_text(encoding="utf-8").splitlines()[2:5]]
    assert not any(p in c for p in placeholders for c in contents)


def write_zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


@pytest.mark.parametrize("member", ["_chat.txt", "WhatsApp Chat with Ben.txt", "WhatsApp Chat mit Ben.txt"])
def test_zip_export_read_in_place(tmp_path: Path, member: str) -> None:
    text = (LOCALES / "en.txt").read_text(encoding="utf-8")
    z = write_zip(tmp_path / "export.zip", {member: text, "IMG-20231231-WA0007.jpg": "\xff\xd8 not really"})
    assert detect(z) == "whatsapp"
    msgs, stats = load(z)
    assert stats.read == 8 and [m.text for m in msgs if m.kind == "text"] == SPEECH["en"][2]
    assert list(tmp_path.iterdir()) == [z]  # nothing extracted


def test_zip_bad_shapes_one_line(workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_persona(workspace, "p")
    no_chat = write_zip(tmp_path / "photos.zip", {"IMG-1.jpg": "x", "notes/readme.md": "hi"})
    with pytest.raises(ImportError_, match="ZIP archive without a chat text inside"):
        detect(no_chat)
    evil = write_zip(tmp_path / "evil.zip", {"../../_chat.txt": (LOCALES / "en.txt").read_text(encoding="utf-8")})
    with pytest.raises(ImportError_, match="unsafe path"):
        detect(evil)
    for z, words in ((no_chat, "without a chat text"), (evil, "unsafe path")):
        assert main(["import", str(z), "--persona", "p", "--me", "Ben", "-w", str(workspace.root)]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
    assert not (tmp_path / "_chat.txt").exists()
    with workspace.store() as store:
        assert store.query("SELECT count(*) FROM imports")[0][0] == 0


def test_clocks_and_calendars(tmp_path: Path) -> None:
    cases = {
        # midnight written as 00 with AM, seconds, U+202F before AM/PM
        "[1/1/24, 00:04:03\u202fAM] Ann: just after midnight\n"
        "[1/1/24, 12:30:00\u202fPM] Ben: lunch\n": [ts(2024, 1, 1, 0, 4, 3), ts(2024, 1, 1, 12, 30)],
        # old iOS without brackets, "PM:" before the name
        "7/1/16, 4:56:55 PM: Ann: old phone\n7/2/16, 9:05:00 AM: Ben: still works\n":
            [ts(2016, 7, 1, 16, 56, 55), ts(2016, 7, 2, 9, 5)],
        # Spanish a. m./p. m. with no-break spaces, day first settled by 13
        "13/1/24, 9:00\u00a0a.\u00a0m. - Ana: buenos días\n13/1/24, 9:00 p. m. - Beto: buenas noches\n":
            [ts(2024, 1, 13, 9), ts(2024, 1, 13, 21)],
        # Thai: Buddhist-era years
        "31/12/2566 21:41 - สมชาย: สวัสดีปีใหม่\n1/1/2567 00:01 - สมหญิง: สุขสันต์\n":
            [ts(2023, 12, 31, 21, 41), ts(2024, 1, 1, 0, 1)],
        # Chinese 上午/下午 before the hour
        "2024/1/5 上午9:41 - 小美: 早\n2024/1/5 下午9:41 - 阿强: 晚安\n": [ts(2024, 1, 5, 9, 41), ts(2024, 1, 5, 21, 41)],
        # month first: 2-digit year and nothing above 12 (US Android); 1/12 is 12 January
        "1/12/24, 8:00 AM - Ann: a\n2/1/24, 8:00 AM - Ben: b\n": [ts(2024, 1, 12, 8), ts(2024, 2, 1, 8)],
        # day first in this file: 25 can only be a day
        "25/12/23, 8:00 - Ann: a\n01/02/24, 8:00 - Ben: b\n": [ts(2023, 12, 25, 8), ts(2024, 2, 1, 8)],
    }
    for i, (text, want) in enumerate(cases.items()):
        path = tmp_path / f"c{i}.txt"
        path.write_text(text, encoding="utf-8")
        msgs, stats = load(path)
        assert stats.bad == 0, text
        assert [m.ts for m in msgs] == want, text
        assert [m.kind for m in msgs] == ["text", "text"], text
        assert all(m.speaker in text and m.speaker[-1:] not in ("M", ".") for m in msgs), text


def test_invisible_marks_and_no_break_space_names(workspace: Workspace, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "chat.txt"
    path.write_text(
        "[31/12/2023, 21:41:05] Mary\u00a0Ann: \u200eHappy new year\n"
        "[31/12/2023, 21:41:09] Tom: \ufeff\u200fthanks!\n"
        "[31/12/2023, 21:42:00] Mary\u00a0Ann: \u200eimage omitted\n",
        encoding="utf-8",
    )
    msgs, _ = load(path)
    assert [(m.kind, m.text) for m in msgs] == [("text", "Happy new year"), ("text", "thanks!"),
                                                ("image", "image omitted")]
    add_persona(workspace, "p")
    assert main(["import", str(path), "--persona", "p", "--me", "Mary Ann", "--json", "-w", str(workspace.root)]) == 0
    assert json.loads(capsys.readouterr().out)["me_messages"] == 2


def test_other_notices_and_lookalikes(tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_text(
        "[2/3/24, 10:00:00] Ann: \u200enull\n"  # view-once media
        "[2/3/24, 10:00:01] Ann: \u200etrip.pdf \u2022 \u200e3 pages \u200edocument omitted\n"
        "[2/3/24, 10:00:02] Ben: \u200eWaiting for this message. This may take a while.\n"
        "[2/3/24, 10:00:03] Ben: is this chat end-to-end encrypted?\n"  # a person asking: speech
        "[2/3/24, 10:00:04] Ann: \u200eMissed video call\n"
        "[2/3/24, 10:00:05] Ann: \u200eBen added Cleo\n"  # iOS writes group events under a name, marked
        "[2/3/24, 10:00:06] Ann: null and void, that contract\n",
        encoding="utf-8",
    )
    msgs, stats = load(path)
    assert stats.read == 7
    assert [m.kind for m in msgs] == ["other", "file", "system", "text", "system", "system", "text"]
    assert msgs[3].text == "is this chat end-to-end encrypted?"
    assert msgs[5].speaker == ""  # a group event is nobody's speech
    assert [m.speaker for m in msgs[:5]] == ["Ann", "Ann", "Ben", "Ben", "Ann"]


def test_speakers_leave_out_notices() -> None:
    from persona_studio.ingest import speakers

    assert speakers(LOCALES / "de.txt") == [("Ben", 4), ("Anna", 3)]
    assert speakers(LOCALES / "ja.txt") == [("健", 4), ("花子", 3)]  # iOS: the notice under 健's name too
