"""Character cards inside PNG files, read and written by walking chunks (no image library).

A card is a `tEXt` chunk whose keyword is `chara` (V2) or `ccv3` (V3) and whose text is
base64 of the card's UTF-8 JSON. Some editors write the same text in an `iTXt` (or `zTXt`)
chunk, compressed or not: those are read alike; cards are always written as `tEXt`. Reading checks every chunk's CRC so a damaged file gives
one clear error instead of a half-read card.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
import zlib
from collections.abc import Iterator

from persona_studio import jsondepth
from persona_studio.errors import UserError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CARD_KEYWORDS = ("ccv3", "chara")


class PngError(UserError, ValueError):
    """A one-line error about a PNG card file."""


def chunks(blob: bytes, source: str) -> Iterator[tuple[bytes, bytes]]:
    """Yield (type, data) for each chunk up to IEND, checking lengths and CRCs."""
    if not blob.startswith(SIGNATURE):
        raise PngError(f"{source}: not a PNG file (bad signature)")
    pos = len(SIGNATURE)
    while True:
        if pos + 8 > len(blob):
            raise PngError(f"{source}: truncated PNG (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", blob[pos : pos + 8])
        end = pos + 8 + length
        if end + 4 > len(blob):
            raise PngError(f"{source}: truncated PNG (chunk {ctype!r} at byte {pos} runs past the end)")
        data = blob[pos + 8 : end]
        (crc,) = struct.unpack(">I", blob[end : end + 4])
        if zlib.crc32(ctype + data) != crc:
            raise PngError(f"{source}: corrupt PNG (bad CRC in chunk {ctype.decode('latin-1')!r} at byte {pos})")
        yield ctype, data
        if ctype == b"IEND":
            return
        pos = end + 4


def _chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


# A compressed card chunk may not inflate past this (base64 of the largest card JSON, and some).
_MAX_INFLATED = 12 << 20
_TEXT_TYPES = (b"tEXt", b"iTXt", b"zTXt")


def _inflate(data: bytes, source: str, key: str) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, _MAX_INFLATED)
    except zlib.error as exc:
        raise PngError(f"{source}: text chunk '{key}': bad compressed data ({exc})") from None
    if d.unconsumed_tail:
        raise PngError(f"{source}: text chunk '{key}': inflates past {_MAX_INFLATED >> 20} MB (refused)")
    return out


def _text_of(ctype: bytes, data: bytes, source: str) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk; None for one without a keyword."""
    if b"\0" not in data:
        return None
    key_b, _, rest = data.partition(b"\0")
    key = key_b.decode("latin-1")
    if ctype == b"tEXt":
        return key, rest.decode("latin-1")
    if ctype == b"zTXt":  # compression method byte, then zlib data of latin-1 text
        return key, _inflate(rest[1:], source, key).decode("latin-1")
    # iTXt: compression flag, method, language tag\0, translated keyword\0, UTF-8 text
    if len(rest) < 2:
        return None
    flag, body = rest[0], rest[2:]
    _lang, _, body = body.partition(b"\0")
    _translated, _, text = body.partition(b"\0")
    if flag:
        text = _inflate(text, source, key)
    return key, text.decode("utf-8", errors="replace")


def text_chunks(blob: bytes, source: str, only: tuple[str, ...] | None = None) -> dict[str, str]:
    """keyword -> text of every tEXt, zTXt and iTXt chunk (the first of each keyword), or of
    the keywords in `only`. Only chunks that are kept get inflated: a hostile PNG with
    thousands of small compressed chunks must not cost thousands of inflations."""
    out: dict[str, str] = {}
    for ctype, data in chunks(blob, source):
        if ctype in _TEXT_TYPES:
            key = data.partition(b"\0")[0].decode("latin-1")
            if key in out or (only is not None and key not in only):
                continue
            found = _text_of(ctype, data, source)
            if found is not None:
                out.setdefault(*found)
    return out


def read_card(blob: bytes, source: str) -> dict:
    texts = text_chunks(blob, source, CARD_KEYWORDS)
    keyword = next((k for k in CARD_KEYWORDS if k in texts), None)
    if keyword is None:
        raise PngError(f"{source}: PNG has no character card (no 'ccv3' or 'chara' tEXt chunk)")
    try:
        raw = base64.b64decode("".join(texts[keyword].split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PngError(f"{source}: tEXt '{keyword}': not valid base64 ({exc})") from None
    from persona_studio.persona.card import MAX_CARD_DEPTH, check_size  # card imports this module

    check_size(f"{source}: tEXt '{keyword}'", len(raw))
    try:
        card = jsondepth.loads(raw.decode("utf-8-sig"), MAX_CARD_DEPTH)  # json.loads within limits
    except jsondepth.TooDeep as exc:
        raise PngError(f"{source}: tEXt '{keyword}': card {exc} (refused)") from None
    except UnicodeDecodeError as exc:
        raise PngError(f"{source}: tEXt '{keyword}': card is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise PngError(f"{source}: tEXt '{keyword}': card is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(card, dict):
        raise PngError(f"{source}: tEXt '{keyword}': a card must be a JSON object")
    return card


def with_text_chunks(image: bytes, cards: list[tuple[str, dict]], source: str) -> bytes:
    """`image` with old card chunks removed and one tEXt chunk per (keyword, card) before IEND."""
    out = [SIGNATURE]
    for ctype, data in chunks(image, source):
        if ctype in _TEXT_TYPES and data.partition(b"\0")[0].decode("latin-1") in CARD_KEYWORDS:
            continue
        if ctype == b"IEND":
            for keyword, card in cards:
                payload = base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8"))
                out.append(_chunk(b"tEXt", keyword.encode("latin-1") + b"\0" + payload))
        out.append(_chunk(ctype, data))
    return b"".join(out)


def default_image(name: str, size: int = 256) -> bytes:
    """A plain square PNG in a colour derived from the name (so personas look different)."""
    r, g, b = hashlib.sha1(name.encode("utf-8")).digest()[:3]
    # Soften towards pastel so the default avatar is easy on the eye.
    pixel = bytes(((r + 255) // 2, (g + 255) // 2, (b + 255) // 2))
    row = b"\0" + pixel * size  # filter byte 0 (None) + RGB pixels
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(row * size, 9)) + _chunk(b"IEND", b"")
