"""The WeChat reader's Arrow path (record-aligned chunks, ingest/csvchunks.py) against the
csv-module row path on what real exports throw at it: broken or unusual quoting, other
encodings, BOMs, old Mac line ends, stray bytes that are not UTF-8. Same messages, same
stats, same error text (file and line) either way."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from persona_studio import ingest
from persona_studio.ingest import wechat
from persona_studio.ingest.csvchunks import CsvChunks
from persona_studio.ingest.wechat_arrow import ArrowColumns

HEADER = "id,MsgSvrID,type_name,is_sender,talker,room_name,msg,src,CreateTime\n"


def _rows(n: int, start: int = 1) -> str:
    return "".join(f'{i},{i},文本,{i % 2},李四,,"第{i}条\n消息",,2024-05-0{1 + i % 9} 10:00:{i % 60:02d}\n'
                   for i in range(start, start + n))


def _outcome(path: Path) -> tuple[object, ...]:
    stats = ingest.ReadStats()
    try:
        return tuple(ingest.read(path, stats=stats)), stats
    except ingest.ImportError_ as exc:
        return ("error", str(exc))


def _both(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """(Arrow path, row path) outcomes of reading `path`, in chunks small enough to be many."""
    monkeypatch.setattr(wechat, "CHUNK_BYTES", 1 << 10)
    fast = _outcome(path)
    with monkeypatch.context() as m:
        m.setattr(ArrowColumns, "block", lambda self, chunk: None)
        slow = _outcome(path)
    return fast, slow


@pytest.mark.parametrize("bad, line", [
    ('301,1,文本,1,bob,,"closed"then text,,2024-05-02 10:00:00\n', 602),  # text after a closing quote
    ('301,1,文本,1,bob,,""x,,2024-05-02 10:00:00\n', 602),  # an empty quoted field, then text
    ('301,1,文本,1,bob,,"never closed,,2024-05-02 10:00:00\n', 602),  # open to the end of the file
])
def test_broken_quoting_fails_on_the_line_the_csv_module_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str, line: int) -> None:
    path = tmp_path / "chat.csv"
    path.write_text(HEADER + _rows(300) + bad + _rows(50, 302).replace('"', ""), encoding="utf-8")
    fast, slow = _both(path, monkeypatch)
    assert fast == slow
    assert fast[0] == "error" and str(fast[1]).startswith(f"{path}:{line}: bad CSV (")


def test_quotes_inside_unquoted_fields_are_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The csv module keeps a quote that does not start a field; the chunker cannot track those,
    so the rest of the file goes row by row, with the same result."""
    path = tmp_path / "chat.csv"
    path.write_text(HEADER + _rows(100) + '101,1,文本,1,bob,,he said "hi" twice,,2024-05-02 10:00:00\n'
                    + _rows(100, 102), encoding="utf-8")
    fast, slow = _both(path, monkeypatch)
    assert fast == slow
    messages, _ = fast
    assert len(messages) == 201 and messages[100].text == 'he said "hi" twice'  # type: ignore[attr-defined]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030", "utf-16"])
def test_other_encodings_read_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str) -> None:
    path = tmp_path / "chat.csv"
    path.write_text(HEADER + _rows(300), encoding=encoding, newline="")
    fast, slow = _both(path, monkeypatch)
    assert fast == slow
    messages, stats = fast
    assert len(messages) == 300 and messages[0].text == "第1条\n消息"  # type: ignore[index]
    assert stats.encoding == (encoding if encoding != "utf-16" else "utf-16")  # type: ignore[attr-defined]


def test_carriage_return_line_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "chat.csv"
    path.write_bytes((HEADER + _rows(200)).replace("\n", "\r").encode("utf-8"))
    fast, slow = _both(path, monkeypatch)
    assert fast == slow and len(fast[0]) == 200  # type: ignore[arg-type]


def test_bytes_that_are_not_utf8_become_replacement_characters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the part the encoding sniffer reads, a stray byte must not kill the import."""
    body = (HEADER + _rows(20000)).encode("utf-8")
    assert len(body) > (1 << 20) + 1000
    at = re.compile(rb":\d\d\n").search(body, (1 << 20) + 100).end()  # type: ignore[union-attr]  # a record's end
    path = tmp_path / "chat.csv"
    path.write_bytes(body[:at] + b"20001,1,\xe6\x96\x87\xe6\x9c\xac,1,bob,,bad \xff byte,,2024-05-02 10:00:00\n"
                     + body[at:])
    fast, slow = _both(path, monkeypatch)
    assert fast == slow
    assert any(m.text == "bad \ufffd byte" for m in fast[0])  # type: ignore[union-attr]


def _reader(data: bytes, size: int) -> CsvChunks:
    """A CsvChunks over `data` in memory."""
    pos = 0

    def readinto(mv: memoryview) -> int:
        nonlocal pos
        piece = data[pos:pos + len(mv)]
        mv[:len(piece)] = piece
        pos += len(piece)
        return len(piece)

    return CsvChunks(readinto, size)


def _chunks(data: bytes, size: int) -> list[bytes]:
    reader = _reader(data, size)
    out = []
    while (chunk := reader.next()) is not None:
        assert chunk.plain
        out.append(chunk.data.to_pybytes())
    return out


@pytest.mark.parametrize("size", [1, 5, 16, 64])
def test_chunks_end_on_record_boundaries(size: int) -> None:
    data = b'a,"x\r\ny",b\r\n"q""uote",,\r\n\r\n1,2,3\rlast,"",row'
    chunks = _chunks(data, size)
    assert b"".join(chunks) == data
    for c in chunks[:-1]:
        assert c.endswith((b"\n", b"\r")) and c.count(b'"') % 2 == 0
        assert not c.endswith(b"\r") or c.endswith(b"3\r")  # never between \r and \n


def test_chunk_line_numbers_count_breaks_as_the_csv_module_does() -> None:
    reader = _reader(b'h\r\n"a\r\nb"\n\rc\n', 4)
    starts = []
    while (chunk := reader.next(first_record=not starts)) is not None:
        starts.append((chunk.line, chunk.breaks))
    assert starts[0] == (0, 1) and sum(b for _, b in starts) == 5

