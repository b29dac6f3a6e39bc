"""Guess a chat export's text encoding from its bytes, and open it as a text stream.

Exports come from phones and old Windows tools: UTF-8 with or without a BOM, UTF-16 with or
without a BOM (WhatsApp on Windows, some QQ versions), GBK/GB18030 (WeChat/QQ tools on Chinese
Windows). The locale of the machine running the import says nothing about any of that, so we
only ever look at the bytes.
"""

from __future__ import annotations

import codecs
import io
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TextIO

from persona_studio.ingest.base import ImportError_

# How much of the file the guess looks at. Big enough that a GBK byte hiding after a long
# ASCII header is still seen; small enough to read instantly.
PREFIX_BYTES = 1 << 20
CHUNK = 1 << 16

# Magic numbers of files people pick by mistake (a WeChat database, a zipped export, a photo).
_MAGIC = (
    b"SQLite format 3\0", b"PK\x03\x04", b"\x1f\x8b", b"\x89PNG", b"\xff\xd8\xff", b"GIF8",
    b"%PDF", b"7z\xbc\xaf", b"Rar!", b"BZh", b"\xfd7zXZ", b"\x7fELF", b"MZ",
)
_OK_CONTROLS = set("\t\n\r\x0c\x1b")


def _binary(path: Path) -> ImportError_:
    return ImportError_(f"{path}: binary file, not a chat export")


ZIP_MAGIC = b"PK\x03\x04"


def _zip_member(path: Path, zf: zipfile.ZipFile) -> zipfile.ZipInfo:
    """The chat text inside a ZIP export (WhatsApp's "Export chat" with or without media):
    `_chat.txt` (iOS), `WhatsApp Chat with NAME.txt` (Android, in the phone's language), else
    the archive's only .txt. Names with `..` or an absolute path are refused, never opened."""
    texts = [i for i in zf.infolist() if not i.is_dir() and i.filename.lower().endswith(".txt")]
    for info in texts:
        name = info.filename.replace("\\", "/")
        if name.startswith("/") or ".." in PurePosixPath(name).parts or (len(name) > 1 and name[1] == ":"):
            raise ImportError_(f"{path}: ZIP entry {info.filename!r} has an unsafe path (refused)")
    base = {i.filename: PurePosixPath(i.filename.replace("\\", "/")).name for i in texts}
    picks = ([i for i in texts if base[i.filename] == "_chat.txt"]
             or [i for i in texts if "whatsapp" in base[i.filename].lower()]
             or (texts if len(texts) == 1 else []))
    if not picks:
        found = f"{len(texts)} .txt files, none named _chat.txt or 'WhatsApp Chat …'" if texts else "no .txt file"
        raise ImportError_(f"{path}: ZIP archive without a chat text inside ({found})")
    return picks[0]


def is_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == ZIP_MAGIC
    except OSError:
        return False


def open_raw(path: Path) -> BinaryIO:
    """The file's bytes; for a ZIP export, the chat text's bytes, streamed out of the archive
    (nothing is extracted to disk)."""
    if not is_zip(path):
        return open(path, "rb")
    try:
        # Closing the ZipFile here is fine: the member stream keeps the file open until it closes.
        with zipfile.ZipFile(path) as zf:
            return io.BufferedReader(_ZipStream(path, zf.open(_zip_member(path, zf))))  # type: ignore[return-value]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, zlib.error,
            EOFError) as exc:
        raise ImportError_(f"{path}: unreadable ZIP archive ({exc})") from None


class _ZipStream(io.RawIOBase):
    """A ZIP member's bytes. Damage shows only while reading (a bad CRC at the end, corrupt
    deflate data, an archive cut short), possibly deep into a parse: it becomes one line then."""

    def __init__(self, path: Path, member: BinaryIO) -> None:
        self._path = path
        self._member = member

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._member.read(len(buffer))
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ImportError_(f"{self._path}: damaged ZIP archive ({exc})") from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._member.close()
        super().close()


def _utf16_guess(head: bytes) -> str | None:
    """Without a BOM, UTF-16 shows itself by NUL bytes: every ASCII char (digits, spaces,
    newlines — plenty in any chat log, even a Chinese one) has a zero high byte."""
    sample = head[:8192]
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even = sample[0::2].count(0)
    odd = sample[1::2].count(0)
    if odd >= pairs * 0.1 and even * 10 <= odd:
        return "utf-16-le"
    if even >= pairs * 0.1 and odd * 10 <= even:
        return "utf-16-be"
    return None


def _valid_prefix(first: bytes, rest: BinaryIO) -> str | None:
    """Which of UTF-8 / GB18030 decodes the first PREFIX_BYTES strictly (UTF-8 preferred).
    Reads in chunks and keeps no decoded text, so the check costs one small buffer."""
    decoders = {enc: codecs.getincrementaldecoder(enc)("strict") for enc in ("utf-8", "gb18030")}
    chunk, seen = first, 0
    while decoders:
        at_eof = not chunk
        for enc, dec in list(decoders.items()):
            try:
                # At the prefix limit a multi-byte char may be cut: that's no error.
                dec.decode(chunk, final=at_eof)
            except UnicodeDecodeError as exc:
                # Nor is a file cut short inside its last character (an interrupted copy): it
                # is still UTF-8, and reading replaces the stub with U+FFFD.
                if not (at_eof and enc == "utf-8" and exc.reason == "unexpected end of data"):
                    del decoders[enc]
        seen += len(chunk)
        if at_eof or seen >= PREFIX_BYTES:
            break
        chunk = rest.read(CHUNK)
    # GB18030 is a superset of GBK and GB2312, so one codec covers all three.
    return next(iter(decoders), None)


def _guess(path: Path, first: bytes, rest: BinaryIO) -> str:
    """The codec to read `path` with, from its first chunk (and more bytes from `rest`)."""
    if first.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if first.startswith(codecs.BOM_UTF16_LE) or first.startswith(codecs.BOM_UTF16_BE):
        return "utf-16"
    if any(first.startswith(m) for m in _MAGIC):
        raise _binary(path)
    if b"\0" in first:
        enc = _utf16_guess(first)
        if enc is None:
            raise _binary(path)
        try:
            codecs.getincrementaldecoder(enc)("strict").decode(first, final=False)
        except UnicodeDecodeError:
            raise _binary(path) from None
        return enc
    enc = _valid_prefix(first, rest)
    if enc is None:
        raise _binary(path)
    return enc


def sniff(path: Path, text_chars: int = 16384) -> tuple[str, str]:
    """(encoding, the first `text_chars` characters of the file decoded). Raises ImportError_
    for a missing, empty or binary file."""
    try:
        with open_raw(path) as f:
            first = f.read(CHUNK)
            encoding = _guess(path, first, f)
    except FileNotFoundError:
        raise ImportError_(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportError_(f"{path}: is a directory, not a chat export") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ImportError_(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    text = codecs.getincrementaldecoder(encoding)("replace").decode(first)[:text_chars]
    if not text.strip().lstrip("\ufeff").strip():
        raise ImportError_(f"{path}: empty file")
    controls = sum(1 for ch in text if ch < " " and ch not in _OK_CONTROLS)
    if controls > max(2, len(text) // 100):
        raise _binary(path)
    return encoding, text.lstrip("\ufeff")


def open_text(path: Path, encoding: str) -> TextIO:
    """A text stream over the file. Undecodable bytes further in (past the sniffed prefix)
    become U+FFFD rather than killing a long import near its end."""
    return io.TextIOWrapper(open_raw(path), encoding=encoding, errors="replace", newline="")


class _Utf8Reader(io.RawIOBase):
    """Re-encodes a text stream as UTF-8 bytes, for parsers (ijson) that only speak UTF-8."""

    def __init__(self, text: TextIO) -> None:
        self._text = text
        self._pending = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self._pending + self._text.read().encode("utf-8")
        while len(self._pending) < size:
            chunk = self._text.read(size)
            if not chunk:
                break
            self._pending += chunk.encode("utf-8")
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def close(self) -> None:
        self._text.close()
        super().close()


def open_utf8_bytes(path: Path, encoding: str) -> BinaryIO:
    """A byte stream of the file as UTF-8 without a BOM, whatever it was written in."""
    if encoding in ("utf-8", "utf-8-sig"):
        f = open_raw(path)
        if encoding == "utf-8-sig":
            f.read(len(codecs.BOM_UTF8))
        return f
    return _Utf8Reader(open_text(path, encoding))  # type: ignore[return-value]
