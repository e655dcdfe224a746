"""The audit chain checked in bulk, a batch of entries at a time, by the rules of
core.audit.verify_chain, without a Python object per column.

The store streams the entries, with the text each entry hash is computed from, and each event
table's rows, with the text of the content its entry should hold (core/store/chain_windows.py).
Here each text is hashed straight from Arrow's buffer and the columns are compared whole. A text
built in SQL that differs from the recorded one is not yet a problem (SQL may write a value in
another notation): that entry is checked again by core.audit's own functions, on the row as
Python reads it, and only their answer counts.

The answer is how far the chain is intact, batch by batch; the caller walks the rest with
core.audit.walk_chain, which names every problem.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EntriesOk = Callable[[list[int]], bool]  # seqs -> their entry hashes match (core.audit's rule)
RowsOk = Callable[[str, list[tuple[int, str]]], bool]  # table, [(seq, content_json)] -> rows match


def intact_through(since: tuple[int, str], entries: Iterator[pa.RecordBatch],
                   rows: dict[str, Iterator[pa.RecordBatch] | None], *, entries_ok: EntriesOk,
                   rows_ok: RowsOk, head_seq: int | None = None) -> tuple[tuple[int, str], str | None]:
    """How far after `since` (seq, entry hash) the chain is intact: ((seq, entry hash) of the
    last entry of the last intact batch, the hash of the entry at `head_seq` if it was in one).
    `entries`: the store's entry batches after `since`; `rows`: per event table, its row
    batches after `since` (None: that table has no bulk form, so nothing is intact).

    Both come in stored order. An entry or row stored out of seq order turns up after batches
    that were taken as intact without it: the answer then goes back to before its seq."""
    if any(it is None for it in rows.values()):
        return since, None
    done = [(*since, None)]  # (seq, entry hash, hash at head) at the end of each intact batch
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="audit-read") as pool:
        streams = [_Ahead(entries, pool), *(_Ahead(it, pool) for it in rows.values())]
        try:
            tables = {table: _Rows(stream, since[0])
                      for table, stream in zip(rows, streams[1:], strict=True)}
            for batch in streams[0]:
                low, prev, hash_at_head = done[-1]
                high = low + batch.num_rows
                hashes = batch.column("entry_hash").to_pylist()
                concerns = _problem_at(batch, low, prev, hashes, tables, entries_ok, rows_ok)
                if concerns is not None:
                    while done[-1][0] >= concerns:
                        done.pop()
                    break
                if head_seq is not None and low < head_seq <= high:
                    hash_at_head = hashes[head_seq - low - 1]
                done.append((high, hashes[-1], hash_at_head))
        finally:
            for stream in streams:
                stream.close()
    low, prev, hash_at_head = done[-1]
    return (low, prev), hash_at_head


class _Ahead:
    """An iterator read one item ahead in a worker thread: the store's streams wait on DuckDB
    without holding the GIL, so the next batch is read while this one is hashed."""

    def __init__(self, items: Iterator, pool: ThreadPoolExecutor):
        self._items, self._pool = items, pool
        self._next: Future | None = pool.submit(next, items, None)

    def __iter__(self):
        return self

    def __next__(self):
        if self._next is None:
            raise StopIteration
        item = self._next.result()
        self._next = None if item is None else self._pool.submit(next, self._items, None)
        if item is None:
            raise StopIteration
        return item

    def close(self) -> None:
        """Wait for the read under way, then end the stream (its query with it)."""
        if self._next is not None:
            self._next.exception()
            self._next = None
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


def _problem_at(batch: pa.RecordBatch, low: int, prev: str, hashes: list[str | None],
                tables: dict[str, _Rows], entries_ok: EntriesOk, rows_ok: RowsOk) -> int | None:
    """None when walk_chain would find nothing in the entries (low, low + len(batch)] and the
    rows of those seqs: every seq once and in order, each chained onto the one before, each
    content and entry hash matching, and each entry's row, exactly one, holding its content.
    Else the first seq the problem can concern (before low + 1 for one stored out of order)."""
    high = low + batch.num_rows
    seq = batch.column("seq")
    if seq.null_count or not np.array_equal(seq.to_numpy(), np.arange(low + 1, high + 1)):
        return min(low + 1, pc.min(seq).as_py() or low + 1)
    if batch.column("prev_hash").to_pylist() != [prev, *hashes[:-1]]:
        return low + 1
    contents = hex_digests(batch.column("content_json"))
    if contents is None or contents != batch.column("content_sha256").to_pylist():
        return low + 1
    texts = hex_digests(batch.column("entry_text"))
    if texts is None or (texts != hashes and not entries_ok(
            [low + 1 + i for i, (a, b) in enumerate(zip(texts, hashes, strict=True)) if a != b])):
        return low + 1
    event_table = batch.column("event_table")
    named = set(pc.unique(event_table).to_pylist())
    if not named <= tables.keys():
        return low + 1  # an entry names a table that has no rows
    for table, stream in tables.items():
        found = stream.through(high)
        if isinstance(found, int):
            return min(low + 1, found)  # a row stored out of seq order
        if table not in named:
            if found.num_rows:
                return low + 1  # rows no entry claims
            continue
        mine = pc.equal(event_table, table)
        seqs = pc.filter(seq, mine)
        if not np.array_equal(found.column("audit_seq").to_numpy(), seqs.to_numpy()):
            return low + 1  # a row missing, added or moved
        content = pc.filter(batch.column("content_json"), mine)
        same = pc.equal(found.column("row_json"), content)
        if pc.all(same, skip_nulls=False).as_py() is not True:
            at = pc.indices_nonzero(pc.invert(pc.fill_null(same, False))).to_pylist()
            if not rows_ok(table, [(seqs[i].as_py(), content[i].as_py()) for i in at]):
                return low + 1
    return None


class _Rows:
    """One table's row batches, taken up to a seq at a time."""

    def __init__(self, batches: Iterator[pa.RecordBatch], after: int):
        self._batches = batches
        self._held: pa.RecordBatch | None = None  # read, not yet given out
        self._seqs: list[int] = []
        self._floor = after  # every row read from now on must have a higher seq than this

    def through(self, high: int) -> pa.Table | int:
        """The rows with a seq <= high not given out yet; or, when a row is stored out of seq
        order (below one read before it, or below a seq the rows were already taken through),
        its seq."""
        parts = []
        while True:
            if self._held is None:
                self._held = next(self._batches, None)
                if self._held is None:
                    break
                self._seqs = self._held.column("audit_seq").to_pylist()
                if any(s is None for s in self._seqs):
                    return self._floor + 1
                if any(b <= a for a, b in zip([self._floor, *self._seqs], self._seqs, strict=False)):
                    return min(self._seqs)
            n = bisect.bisect_right(self._seqs, high)
            if n:
                parts.append(self._held.slice(0, n))
                self._floor = self._seqs[n - 1]
            if n < len(self._seqs):
                self._held, self._seqs = self._held.slice(n), self._seqs[n:]
                break
            self._held = None
        self._floor = max(self._floor, high)
        return pa.Table.from_batches(parts) if parts else _NO_ROWS


_NO_ROWS = pa.schema([("audit_seq", pa.int64()), ("row_json", pa.string())]).empty_table()


def hex_digests(column: pa.Array | pa.ChunkedArray) -> list[str] | None:
    """sha256 hex digest of each text of a string column, hashed from its UTF-8 bytes in place
    (core.audit.sha256_text hashes the same bytes: every text the store holds is valid UTF-8);
    None if a text is missing."""
    out: list[str] = []
    sha256 = hashlib.sha256
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for chunk in chunks:
        if chunk.null_count:
            return None
        if not len(chunk):
            continue
        _, offsets, data = chunk.buffers()
        width = "q" if pa.types.is_large_string(chunk.type) else "i"
        ends = memoryview(offsets).cast(width)[chunk.offset:chunk.offset + len(chunk) + 1]
        text = memoryview(data) if data is not None else memoryview(b"")
        out.extend(sha256(text[a:b]).hexdigest() for a, b in zip(ends[:-1], ends[1:], strict=True))
    return out
