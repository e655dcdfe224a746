"""The audit chain streamed in bulk, for verification: Arrow batches, no Python object per value.

One streaming query for the entries, with the text each entry hash is computed from, and one per
event table, with the text of the content a whole-row entry holds for each row. Both texts are
built in SQL in the canonical form of core.audit (sorted keys, no spaces, ISO times);
core.audit_windows hashes and compares them. The rows come in the order they were stored (the
order of their seqs: no sort, so nothing is held but a batch); core.audit_windows checks that
order and leaves any other to the row-by-row walk.

The Python functions stay the definition. Each value is written here either exactly as
core.audit.canonical_json writes it, or as text that canonical_json never produces (a double in
another notation, a control character escaped in upper case, NaN), never as another value's
text: so a text equal to what was recorded proves the Python form equal to it too, and a text
that differs only sends that entry to the Python check. A column of another type than these
gets no bulk form at all (row_batches returns None).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pyarrow as pa

from core.store.records import CONTENT_FORMAT, RECORDS, SECRET_PREFIX

# DuckDB while a chain is verified: each block is read once, so its cache holds little of use;
# one thread (the entries and the rows are read one batch after another, by one thread).
VERIFY_SETTINGS = {"memory_limit": "64MB", "threads": "1"}
BOUND_ABOVE = 20_000  # entries: a shorter chain is read without VERIFY_SETTINGS
BATCH_ROWS = 2_500
STREAM_BUFFER = "1MB"  # what DuckDB computes ahead of a stream (default 10 MB)
DROP_EVERY = 2  # entry batches read between two drops of DuckDB's cached blocks


def _iso(col: str) -> list[str]:
    """datetime.isoformat() of a TIMESTAMP, as concat() arguments: microseconds only when there
    are some; a time Python has no datetime for (infinity, year 0 or 10000) starts with "!", in
    no JSON."""
    return [f"CASE WHEN {_OUTSIDE.format(c=col)} THEN '!' ELSE '' END",
            f"strftime({col}, '%Y-%m-%dT%H:%M:%S')",
            f"CASE WHEN microsecond({col}) % 1000000 = 0 THEN '' ELSE strftime({col}, '.%f') END"]


_OUTSIDE = "NOT isfinite({c}) OR year({c}) NOT BETWEEN 1 AND 9999"


def _value(column: str, sql_type: str, secret: bool) -> list[str] | None:
    """canonical_json of a column's value, as concat() arguments (None: no bulk form for that
    type). to_json writes a few doubles in another notation (1e-06, 1e22) and control
    characters in upper-case hex: those never match."""
    if secret:  # as chain_content: SECRET_PREFIX and the sha256 of the text
        return [f"""CASE WHEN {column} IS NULL THEN 'null' ELSE '"{SECRET_PREFIX}' || """
                f"""sha256({column}) || '"' END"""] if sql_type == "VARCHAR" else None
    if sql_type in ("VARCHAR", "BOOLEAN", "DOUBLE", "VARCHAR[]", "BIGINT", "INTEGER"):
        return [f"coalesce(to_json({column}), 'null')"]
    if sql_type == "DATE":
        return [f"CASE WHEN {_OUTSIDE.format(c=column)} THEN '!' ELSE '' END",
                f"""coalesce(strftime({column}, '"%Y-%m-%d"'), 'null')"""]
    if sql_type == "TIMESTAMP":
        return [f"""CASE WHEN {column} IS NULL THEN 'null' ELSE '"' END""", *_iso(column),
                f"""CASE WHEN {column} IS NULL THEN '' ELSE '"' END"""]
    return None


def row_json_sql(table: str, types: dict[str, str]) -> str | None:
    """SQL for the chain content (records.chain_content, in canonical JSON) of a row of `table`
    whose columns have `types` (column -> SQL type); None when a column is missing or of a
    type without a bulk form. One concat() of the pieces: each value is written once."""
    record = RECORDS[table]
    parts = [f"""'{{"_format":{CONTENT_FORMAT}'"""]
    for name in sorted(record.__slots__):  # "_format" sorts before every column name
        value = _value(name, types.get(name, ""), name in record.secret)
        if value is None:
            return None
        parts += [f"""',"{name}":'""", *value]
    return f"concat({', '.join(parts)}, '}}')"


# What core.audit.entry_hash hashes: canonical_json([prev_hash, seq, recorded_at, kind, actor,
# subject, event_table, content_sha256]).
ENTRY_TEXT = ("""concat('[', to_json(prev_hash), ',', CAST(seq AS VARCHAR), ',"', """
              + ", ".join(_iso("recorded_at")) + """, '",', to_json(kind), ',', to_json(actor), """
              "',', coalesce(to_json(subject), 'null'), ',', to_json(event_table), ',', "
              "to_json(content_sha256), ']')")


class ChainWindowReads:
    """Bulk reads of the chain; mixed into Store."""

    _bounded = 0  # verifications under bounded_memory in this process, per store
    _bound_lock = threading.Lock()
    _settings_before: dict[str, str] = {}  # noqa: RUF012 - replaced, never changed

    def entry_batches(self, *, after: int, upto: int) -> Iterator[pa.RecordBatch]:
        """Entries with after < seq <= upto, in stored order, BATCH_ROWS at a time: seq,
        event_table, content_json, entry_hash and entry_text (which holds prev_hash and
        content_sha256, so they are not read out twice)."""
        batches = self._stream(
            "SELECT seq, event_table, content_json, entry_hash, "
            f"{ENTRY_TEXT} AS entry_text FROM audit_log WHERE seq > $1 AND seq <= $2", after, upto)
        return self._dropping(batches, upto) if self._bounded else batches

    def row_batches(self, table: str, *, after: int, upto: int) -> Iterator[pa.RecordBatch] | None:
        """A table's rows with after < audit_seq <= upto, in stored order: audit_seq and
        row_json (the content a whole-row entry holds for the row). None when the table has
        no bulk form (a column missing or of an unexpected type)."""
        if table not in RECORDS:
            raise ValueError(f"unknown event table {table}")
        types = dict(self._all("SELECT column_name, data_type FROM information_schema.columns "
                               "WHERE table_schema = current_schema() AND table_name = ?", [table]))
        row_json = row_json_sql(table, types)
        if row_json is None:
            return None
        return self._stream(f"SELECT audit_seq, {row_json} AS row_json FROM {table} "
                            "WHERE audit_seq > $1 AND audit_seq <= $2", after, upto)

    def _stream(self, sql: str, after: int, upto: int) -> Iterator[pa.RecordBatch]:
        return self._dialect.arrow_batches(self._cursor(), sql, [after, upto], rows=BATCH_ROWS,
                                     buffer=STREAM_BUFFER)

    def _dropping(self, batches: Iterator[pa.RecordBatch], upto: int) -> Iterator[pa.RecordBatch]:
        """The entry batches, DuckDB's cache of the blocks read (the entries' and the rows')
        dropped after every DROP_EVERY of them while more entries follow, so while this query
        still holds its own blocks (dialect.drop_cached_blocks says why, under VERIFY_SETTINGS)."""
        cur = self._cursor()
        try:
            for i, batch in enumerate(batches, 1):
                if i % DROP_EVERY == 0 and batch.num_rows and batch.column("seq")[-1].as_py() < upto:
                    self._dialect.drop_cached_blocks(cur, limit=VERIFY_SETTINGS["memory_limit"])
                yield batch
        finally:
            batches.close()
            cur.close()

    @contextlib.contextmanager
    def bounded_memory(self, *, entries: int):
        """While a chain of `entries` entries is verified, DuckDB runs with VERIFY_SETTINGS: its
        cache of the blocks read would otherwise grow with the store, and each is read once.
        DuckDB sets these for the whole database, so it is done only for a long chain (not for
        the few entries added since the last verification), and the settings before are put
        back when the last verification running in this process ends."""
        if entries <= BOUND_ABOVE:
            yield
            return
        with self._bound_lock:
            if self._bounded == 0:
                self._settings_before = {name: self._one("SELECT current_setting(?)", [name])[0]
                                         for name in VERIFY_SETTINGS}
                for name, value in VERIFY_SETTINGS.items():
                    self._cursor().execute(f"SET {name} = '{value}'")
            self._bounded += 1
        try:
            yield
        finally:
            with self._bound_lock:
                self._bounded -= 1
                if self._bounded == 0:
                    for name, value in self._settings_before.items():
                        self._dialect.put_back_setting(self._cursor(), name, value)
