"""One chunk of a WeChat CSV (whole records, see ingest/csvchunks.py) -> a Block, with pyarrow.

Columns with few distinct values (type_name, is_sender, talker, room_name, is_forward) are
read as dictionaries, so everything decided per value (the kind of a type name, "me" for
is_sender=1) is decided once per distinct value in Python and spread over the rows with
numpy `take`s. The rules are `_Columns.slow`'s (ingest/wechat.py); a chunk where they would
drop a row (too few fields, an odd CreateTime or is_sender) or where pyarrow balks (bytes
that are not UTF-8) gets None, and the caller reads it row by row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from persona_studio.ingest.wechat import ME, ME_ID, QUOTE_MARK, kind_of

if TYPE_CHECKING:
    import pyarrow as pa

    from persona_studio.ingest.csvchunks import Chunk
    from persona_studio.ingest.wechat import _Columns
    from persona_studio.store.blocks import Block

_STAMP = "0000-00-00 00:00:00"
_DIGITS = [i for i, ch in enumerate(_STAMP) if ch == "0"]


class ArrowColumns:
    """Reads chunks of one file (the header fixed which column is which)."""

    def __init__(self, cols: _Columns):
        import pyarrow as pa
        import pyarrow.csv as pacsv

        self.cols = cols
        # Positional names: the header may repeat or leave out names; rows must have exactly
        # as many fields as the header (arrow rejects others, and the row path judges them).
        self.names = [f"c{i}" for i in range(cols.n_header)]
        few = pa.dictionary(pa.int32(), pa.string())
        wanted = {cols.i_type: few, cols.i_sender: few, cols.i_talker: few, cols.i_msg: pa.string(),
                  cols.i_time: pa.string()}
        for i, kind in ((cols.i_room, few), (cols.i_fwd, few), (cols.i_svr, pa.string())):
            if i is not None:
                wanted[i] = kind
        self.convert = pacsv.ConvertOptions(
            column_types={self.names[i]: t for i, t in wanted.items()},
            include_columns=[self.names[i] for i in sorted(wanted)],
            strings_can_be_null=False,
        )
        self.parse = pacsv.ParseOptions(newlines_in_values=True)

    def block(self, chunk: Chunk) -> Block | None:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        read = pacsv.ReadOptions(column_names=self.names, use_threads=False, block_size=chunk.data.size + 1)
        try:
            table = pacsv.read_csv(pa.BufferReader(chunk.data), read_options=read, parse_options=self.parse,
                                   convert_options=self.convert)
        except pa.ArrowInvalid:
            return None
        batches = table.to_batches()
        if len(batches) != 1:  # no rows (blank lines only), or more than one parse block
            return None
        return self._convert(batches[0], chunk.has_cr)

    def _convert(self, batch: pa.RecordBatch, has_cr: bool) -> Block | None:
        import pyarrow as pa
        import pyarrow.compute as pc

        from persona_studio.store.blocks import Block, make_batch

        cols, names, n = self.cols, self.names, batch.num_rows
        ts = wall_times(batch.column(names[cols.i_time]))
        if ts is None:
            return None
        sender_idx, senders = _dict(batch.column(names[cols.i_sender]))
        senders = [s.strip() for s in senders]
        if not set(senders) <= {"0", "1"}:
            return None
        is_sender = np.array([s == "1" for s in senders], dtype=bool)[sender_idx]
        talker_idx, talkers = _dict(batch.column(names[cols.i_talker]))
        speaker = _with_me(talker_idx, talkers, is_sender, ME)
        speaker_id = _with_me(talker_idx, talkers, is_sender, ME_ID)

        type_idx, type_names = _dict(batch.column(names[cols.i_type]))
        type_names = [t.strip() for t in type_names]
        kinds = [kind_of(t) for t in type_names]
        kind = _dictionary(type_idx, kinds)

        text = batch.column(names[cols.i_msg])
        # Quote replies carry the quoted text: the row path cuts it (rare, so no kernel for it).
        for mark in (QUOTE_MARK, "- - - - -"):
            if pc.any(pc.match_substring(text, mark)).as_py():
                return None
        if has_cr:  # quoted newlines keep the file's CRLF; messages use "\n"
            text = pc.replace_substring(text, "\r\n", "\n")
        if cols.i_room is not None:
            chat = batch.column(names[cols.i_room])
        else:
            chat = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([""]))

        meta: dict[str, pa.Array] = {"is_sender": pa.array(is_sender.astype(np.int64))}
        if cols.i_svr is not None:
            svr = batch.column(names[cols.i_svr])
            svr = pc.if_else(pc.equal(svr, ""), pa.scalar(None, pa.string()), svr)
            if svr.null_count < n:
                meta["MsgSvrID"] = svr
        if cols.i_fwd is not None:
            fwd_idx, fwd = _dict(batch.column(names[cols.i_fwd]))
            per_value = [None if f.strip() in ("", "0") else 1 for f in fwd]
            if any(per_value):
                meta["is_forward"] = pa.array(per_value, pa.int64()).take(pa.array(fwd_idx))
                kind = _forwards(kind, np.array([v is not None for v in per_value], dtype=bool)[fwd_idx])
        if "other" in kinds:
            per_type = [t if k == "other" else None for t, k in zip(type_names, kinds, strict=True)]
            meta["type_name"] = pa.array(per_type, pa.string()).take(pa.array(type_idx))
        columns = [pa.array(ts), pa.array(np.zeros(n, np.uint8)), chat, speaker, speaker_id, kind, text]
        return Block.of(make_batch(columns, meta))


def _dict(column: Any) -> tuple[np.ndarray, list[str]]:
    """(indices, dictionary values) of a dictionary column as read (values may be unused)."""
    return column.indices.to_numpy(zero_copy_only=False), column.dictionary.to_pylist()


def _forwards(kind: Any, forwarded: np.ndarray) -> pa.Array:
    """`kind` with forwarded rows' "text"/"quote" made "forward": someone else's words
    (ingest/base.py Kind), as the row path does."""
    import pyarrow as pa

    values = kind.dictionary.to_pylist()
    if "forward" not in values:
        values.append("forward")
    idx = kind.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    textish = np.isin(idx, [values.index(k) for k in ("text", "quote") if k in values])
    idx[forwarded & textish] = values.index("forward")
    return pa.DictionaryArray.from_arrays(pa.array(idx), pa.array(values, pa.string()))


def _dictionary(indices: np.ndarray, per_index: list[str]) -> pa.Array:
    """A dictionary column whose row i is per_index[indices[i]], its dictionary distinct."""
    import pyarrow as pa

    distinct = list(dict.fromkeys(per_index))
    place = np.array([distinct.index(v) for v in per_index], dtype=np.int32)
    return pa.DictionaryArray.from_arrays(pa.array(place[indices]), pa.array(distinct, pa.string()))


def _with_me(talker_idx: np.ndarray, talkers: list[str], is_sender: np.ndarray, me: str) -> pa.Array:
    """The talker, or `me` where is_sender=1, as a dictionary column."""
    import pyarrow as pa

    values = list(talkers)
    if me not in values:
        values.append(me)
    indices = np.where(is_sender, np.int32(values.index(me)), talker_idx).astype(np.int32, copy=False)
    return pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(values, pa.string()))


def wall_times(column: pa.Array) -> np.ndarray | None:
    """POSIX seconds (wall time read as UTC, as `parse_wall_time`) of a string column, or None
    unless every value is a valid `YYYY-MM-DD HH:MM:SS` (the row path judges the others).

    Fixed width makes the values one (n, 19) byte matrix: numpy checks the shape and the
    ranges (impossible dates included) and does the arithmetic, no string is parsed."""
    import pyarrow.compute as pc

    n = len(column)
    width = len(_STAMP)
    lengths = pc.min_max(pc.binary_length(column)).as_py()
    if n == 0 or column.null_count or lengths != {"min": width, "max": width}:
        return None
    _, offsets, data = column.buffers()
    start = int(np.frombuffer(offsets, dtype=np.int32, count=1, offset=4 * column.offset)[0])
    stamp = np.frombuffer(data, dtype=np.uint8, count=n * width, offset=start).reshape(n, width)
    for i, ch in ((4, "-"), (7, "-"), (10, " "), (13, ":"), (16, ":")):
        if not (stamp[:, i] == ord(ch)).all():
            return None
    digits = stamp[:, _DIGITS] - np.uint8(ord("0"))  # a non-digit wraps past 9
    if (digits > 9).any():
        return None
    d = digits.astype(np.int32)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 4] * 10 + d[:, 5], d[:, 6] * 10 + d[:, 7]
    hour, minute, second = d[:, 8] * 10 + d[:, 9], d[:, 10] * 10 + d[:, 11], d[:, 12] * 10 + d[:, 13]
    # wall_ts's limits: year 1.., a real day of the month, hour < 24, minute < 60, second < 61
    if ((year < 1) | (month < 1) | (month > 12) | (day < 1) | (hour > 23) | (minute > 59) | (second > 60)).any():
        return None
    months = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    first = months.astype("datetime64[D]").astype(np.int64)
    if (day > (months + 1).astype("datetime64[D]").astype(np.int64) - first).any():
        return None
    seconds = (first + day - 1) * 86400 + hour * 3600 + minute * 60 + second
    return seconds.astype(np.float64)
