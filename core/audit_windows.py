"""The audit chain checked in bulk, a batch of entries at a time, by the rules of
core.audit.verify_chain, without a Python object per column.

The store streams the entries, with the text each entry hash is computed from, and each event
table's rows, with the text of the content its entry should hold (core/store/chain_windows.py).
Here each text is hashed straight from Arrow's buffer and the columns are compared whole, as
blocks of bytes. A text built in SQL that differs from the recorded one is not yet a problem
(SQL may write a value in another notation): that entry is checked again by core.audit's own
functions, on the row as Python reads it, and only their answer counts.

The answer is how far the chain is intact, batch by batch; the caller walks the rest with
core.audit.walk_chain, which names every problem.

One worker thread reads every stream, a few batches ahead, while this thread hashes and
compares: DuckDB computes without holding the GIL, so the reads and the hashing use both cores.
The reads go one at a time (two queries at once cost DuckDB more than twice the work under a
bounded memory).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EntriesOk = Callable[[list[int]], bool]  # seqs -> their entry hashes match (core.audit's rule)
RowsOk = Callable[[str, list[tuple[int, str]]], bool]  # table, [(seq, content_json)] -> rows match

AHEAD = 3  # batches of each stream read ahead of the one being checked
# The GIL switch interval while a chain is checked: the reading thread needs the GIL for a moment
# after each batch DuckDB computed, and would otherwise wait the default 5 ms for this thread's
# hashing to let go, at every batch.
SWITCH_INTERVAL_S = 0.0005
HASH = 64  # characters of a sha256 hex digest


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
    with _prompt_handoffs(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-read") as pool:
        streams = [_Ahead(entries, pool), *(_Ahead(it, pool) for it in rows.values())]
        try:
            tables = {table: _Rows(stream, since[0])
                      for table, stream in zip(rows, streams[1:], strict=True)}
            for batch in streams[0]:
                low, prev, hash_at_head = done[-1]
                high = low + batch.num_rows
                concerns = _problem_at(batch, low, prev, tables, entries_ok, rows_ok)
                if concerns is not None:
                    while done[-1][0] >= concerns:
                        done.pop()
                    break
                hashes = batch.column("entry_hash")
                if head_seq is not None and low < head_seq <= high:
                    hash_at_head = hashes[head_seq - low - 1].as_py()
                done.append((high, hashes[-1].as_py(), hash_at_head))
        finally:
            for stream in streams:
                stream.close()
    low, prev, hash_at_head = done[-1]
    return (low, prev), hash_at_head


_handoffs_lock = threading.Lock()
_handoffs: list[float] = []  # the interval before the first check running now, while any runs


@contextlib.contextmanager
def _prompt_handoffs():
    """SWITCH_INTERVAL_S while checks run; the interval before is put back when the last ends."""
    with _handoffs_lock:
        if not _handoffs:
            _handoffs.append(sys.getswitchinterval())
            sys.setswitchinterval(min(SWITCH_INTERVAL_S, _handoffs[0]))
        else:
            _handoffs.append(_handoffs[0])
    try:
        yield
    finally:
        with _handoffs_lock:
            before = _handoffs.pop()
            if not _handoffs:
                sys.setswitchinterval(before)


class _Ahead:
    """An iterator read up to AHEAD items ahead by the pool's worker, one read at a time: the
    store's streams wait on DuckDB without holding the GIL, so the next batches are read while
    this one is checked."""

    def __init__(self, items: Iterator, pool: ThreadPoolExecutor):
        self._items, self._pool = items, pool
        self._lock = threading.Lock()
        self._ready: deque = deque()  # items read, not yet taken (None: the end)
        self._reading: Future | None = None
        self._ended = self._closed = False
        with self._lock:
            self._read_on()

    def _read_on(self) -> None:
        """Start the next read if none is under way and fewer than AHEAD wait (lock held)."""
        if self._reading is None and not (self._ended or self._closed) and len(self._ready) < AHEAD:
            self._reading = self._pool.submit(self._read)

    def _read(self) -> None:
        item = next(self._items, None)
        with self._lock:
            self._ready.append(item)
            self._ended = item is None
            self._reading = None
            self._read_on()

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            with self._lock:
                if self._ready:
                    item = self._ready.popleft()
                    self._read_on()
                    break
                reading = self._reading
            if reading is None:
                raise StopIteration
            reading.result()  # a read that failed raises here
        if item is None:
            raise StopIteration
        return item

    def close(self) -> None:
        """Wait for the read under way, then end the stream (its query with it)."""
        with self._lock:
            self._closed = True
            reading = self._reading
        if reading is not None:
            reading.exception()
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


def _problem_at(batch: pa.RecordBatch, low: int, prev: str, tables: dict[str, _Rows],
                entries_ok: EntriesOk, rows_ok: RowsOk) -> int | None:
    """None when walk_chain would find nothing in the entries (low, low + len(batch)] and the
    rows of those seqs: every seq once and in order, each chained onto the one before, each
    content and entry hash matching, and each entry's row, exactly one, holding its content.
    Else the first seq the problem can concern (before low + 1 for one stored out of order)."""
    n = batch.num_rows
    high = low + n
    seq = batch.column("seq")
    if seq.null_count or not np.array_equal(seq.to_numpy(), np.arange(low + 1, high + 1)):
        return min(low + 1, pc.min(seq).as_py() or low + 1)
    hashes = _fixed(batch.column("entry_hash"), HASH)
    if hashes is None or not _is_hex(prev):
        return low + 1  # a hash that is no digest: its entry cannot match
    texts = batch.column("entry_text")
    if not _chained(texts, hashes, prev.encode()):
        return low + 1
    contents = hex_digests(batch.column("content_json"))
    if contents is None or not _holds_content_hash(texts, contents):
        return low + 1
    computed = hex_digests(texts)
    if computed is None:
        return low + 1
    differ = np.flatnonzero((computed != hashes).any(axis=1))
    if len(differ) and not entries_ok((differ + low + 1).tolist()):
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
        if len(named) == 1:  # every entry of the batch is this table's
            seqs, content = seq, batch.column("content_json")
        else:
            mine = pc.equal(event_table, table)
            seqs, content = pc.filter(seq, mine), pc.filter(batch.column("content_json"), mine)
        if not np.array_equal(found.column("audit_seq").to_numpy(), seqs.to_numpy()):
            return low + 1  # a row missing, added or moved
        same = pc.equal(found.column("row_json"), content)
        if pc.all(same, skip_nulls=False).as_py() is not True:
            at = pc.indices_nonzero(pc.invert(pc.fill_null(same, False))).to_pylist()
            if not rows_ok(table, [(seqs[i].as_py(), content[i].as_py()) for i in at]):
                return low + 1
    return None


# Where the entry text (core.audit.entry_hash's canonical JSON, built in SQL as
# '[' || to_json(prev_hash) || ',' ... ',' || to_json(content_sha256) || ']') holds the two
# hashes. A JSON string starts and ends with '"' and holds '"' only as '\"': so a text that starts
# with '["' + a digest + '",' was built from exactly that prev_hash, and one that ends with ',"' +
# a digest + '"]' from exactly that content_sha256 (a missing one leaves '[,' or ',]').
_OPEN, _CLOSE = np.frombuffer(b'["', np.uint8), np.frombuffer(b'",', np.uint8)
_TAIL_OPEN, _TAIL_CLOSE = np.frombuffer(b',"', np.uint8), np.frombuffer(b'"]', np.uint8)
_EDGE = HASH + 4  # characters of each end checked
_HEX = frozenset(b"0123456789abcdef")


def _is_hex(value: str) -> bool:
    """Whether a hash is a sha256 hex digest as core.audit writes one."""
    return len(value) == HASH and _HEX.issuperset(value.encode())


def _chained(texts: pa.Array, hashes: np.ndarray, prev: bytes) -> bool:
    """Whether each entry text starts with the hash of the entry before it: `prev` for the
    first, the row before in `hashes` (one digest per row) for the others."""
    before = np.vstack([np.frombuffer(prev, np.uint8), hashes[:-1]])
    head = _ends(texts, start=True)
    if head is None:
        return False
    width = len(before)
    return np.array_equal(head, np.hstack([np.broadcast_to(_OPEN, (width, 2)), before,
                                           np.broadcast_to(_CLOSE, (width, 2))]))


def _holds_content_hash(texts: pa.Array, contents: np.ndarray) -> bool:
    """Whether each entry text ends with the digest of its content (a row of `contents`)."""
    tail = _ends(texts, start=False)
    if tail is None:
        return False
    width = len(contents)
    return np.array_equal(tail, np.hstack([np.broadcast_to(_TAIL_OPEN, (width, 2)), contents,
                                           np.broadcast_to(_TAIL_CLOSE, (width, 2))]))


def _ends(texts: pa.Array, *, start: bool) -> np.ndarray | None:
    """The first (or last) _EDGE bytes of each text, one row each; None if a text is missing
    or shorter."""
    if texts.null_count:
        return None
    as_bytes = texts.cast(pa.large_binary() if pa.types.is_large_string(texts.type) else pa.binary())
    return _fixed(pc.binary_slice(as_bytes, 0, _EDGE) if start else pc.binary_slice(as_bytes, -_EDGE),
                  _EDGE)


def _fixed(column: pa.Array, width: int) -> np.ndarray | None:
    """A string column whose every value is `width` bytes long, one row of bytes each; None
    when a value is missing or of another length."""
    if column.null_count:
        return None
    offsets, data = _buffers(column)
    if not np.array_equal(np.diff(offsets), np.full(len(column), width)):
        return None
    return data[offsets[0]:offsets[-1]].reshape(len(column), width)


def _buffers(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string column's offsets (its len + 1 of them) and its bytes, as numpy arrays, in place."""
    column = column.cast(pa.large_string()) if pa.types.is_string_view(column.type) else column
    _, offsets, data = column.buffers()
    large = pa.types.is_large_string(column.type) or pa.types.is_large_binary(column.type)
    width = np.int64 if large else np.int32
    ends = np.frombuffer(offsets, width, count=len(column) + 1,
                         offset=column.offset * np.dtype(width).itemsize).astype(np.int64)
    return ends, (np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8))


def hex_digests(column: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """The sha256 hex digest of each text of a string column, one row of 64 bytes each, hashed
    from its UTF-8 bytes in place (core.audit.sha256_text hashes the same bytes: every text the
    store holds is valid UTF-8); None if a text is missing."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    digests: list[bytes] = []
    sha256 = hashlib.sha256
    for chunk in chunks:
        if chunk.null_count:
            return None
        if not len(chunk):
            continue
        offsets, data = _buffers(chunk)
        ends = offsets.tolist()
        text = memoryview(data)
        digests += [sha256(text[a:b]).digest() for a, b in zip(ends[:-1], ends[1:], strict=True)]
    return np.frombuffer(b"".join(digests).hex().encode(), np.uint8).reshape(len(digests), HASH)


class _Rows:
    """One table's row batches, taken up to a seq at a time."""

    def __init__(self, batches: Iterator[pa.RecordBatch], after: int):
        self._batches = batches
        self._held: pa.RecordBatch | None = None  # read, not yet given out
        self._seqs = np.empty(0, np.int64)
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
                if not self._held.num_rows:
                    self._held = None
                    continue
                column = self._held.column("audit_seq")
                if column.null_count:
                    return self._floor + 1
                self._seqs = column.to_numpy()
                if self._seqs[0] <= self._floor or (np.diff(self._seqs) <= 0).any():
                    return int(self._seqs.min())
            n = int(np.searchsorted(self._seqs, high, side="right"))
            if n:
                parts.append(self._held.slice(0, n))
                self._floor = int(self._seqs[n - 1])
            if n < len(self._seqs):
                self._held, self._seqs = self._held.slice(n), self._seqs[n:]
                break
            self._held = None
        self._floor = max(self._floor, high)
        return pa.Table.from_batches(parts) if parts else _NO_ROWS


_NO_ROWS = pa.schema([("audit_seq", pa.int64()), ("row_json", pa.string())]).empty_table()
