"""Scanning a whole column of texts with numpy: the texts joined into one array of code points,
and per-code-point tables built by the regex engine's own rules. Shared by the batch checks of
blocked words (`BlockedWords.find_many`) and PII (`Redactor.candidates`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


def every_char() -> str:
    """Every code point but the surrogates, in order: `pattern.findall(every_char())` lists
    exactly the characters a one-character pattern matches, with the regex engine's own rules
    (Unicode digits, case folding) instead of a re-implementation of them."""
    import numpy as np

    points = np.concatenate((np.arange(0xD800, dtype="<u4"), np.arange(0xE000, 0x110000, dtype="<u4")))
    return points.tobytes().decode("utf-32-le")


def joined_code_points(texts: Sequence[str]) -> tuple[NDArray[np.unsignedinteger], NDArray[np.intp]]:
    r"""The texts joined by "\x00", as an array of code points (index i of the array is index
    i of the joined string), and the index of the separator after each text but the last.

    `np.searchsorted(ends, pos)` is the index of the text that holds position `pos`."""
    import numpy as np

    joined = "\x00".join(texts)
    raw = joined.encode("utf-16-le", "surrogatepass")
    if len(raw) == 2 * len(joined):
        # Nothing beyond the BMP, so each UTF-16 unit is one code point; this encoding is
        # about 3x cheaper than UTF-32 and halves every array pass after it.
        codes: NDArray[np.unsignedinteger] = np.frombuffer(raw, "<u2")
    else:
        codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), "<u4")
    ends = np.flatnonzero(codes == 0)
    if len(ends) != len(texts) - 1:
        # A text holds "\x00" itself, so not every zero is a boundary: take the boundaries
        # from the lengths instead (a second pass over the texts; chat text practically never
        # gets here).
        lengths = np.fromiter(map(len, texts), np.intp, len(texts))
        ends = np.cumsum(lengths + 1)[:-1] - 1
    return codes, ends


def lookup(table: NDArray[np.generic], codes: NDArray[np.unsignedinteger], pad: int = 0) -> NDArray[np.generic]:
    """`table[codes]`, followed by `pad` zeros.

    In slices: numpy first widens the indices to intp (8 bytes each), and for a whole block
    (~100 MB of them) that costs as much again as the lookup; slices that stay in the CPU
    cache make the whole pass about 2x faster."""
    import numpy as np

    out = np.zeros(len(codes) + pad, table.dtype)
    step = 1 << 18
    for i in range(0, len(codes), step):
        part = codes[i:i + step]
        np.take(table, part, out=out[i:i + len(part)])
    return out
