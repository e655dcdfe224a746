"""What is DuckDB's own in the store, in one module: opening a file (and its settings), which
errors mean what (another process holds the file, a write lost the race for the chain's head),
the append-only triggers (DuckDB's error()), CHECKPOINT, a database copied with ATTACH and COPY
FROM DATABASE, results as DataFrames, bulk inserts read from Arrow.

The rest of the package is SQL over a DB-API cursor (`?` parameters) and plain Python; no other
module imports duckdb (an import-linter contract). A server backend brings its own module of
these parts. The reads' SQL also uses a few DuckDB functions (list_contains, QUALIFY, to_days,
from_json), each in core/store/queries.py or aggregates.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from core.errors import StoreLocked, StoreUnavailable

Error = duckdb.Error  # whatever the database raises
Connection = duckdb.DuckDBPyConnection  # a connection, and each cursor taken from it

SMALL_INSERT = 20  # below this many rows, parameterised INSERTs; above, one Arrow insert
# A larger checkpoint threshold than the 16 MB default: a batch commit then appends to the WAL
# instead of rewriting the file every few thousand rows.
CONFIG = {"checkpoint_threshold": "256MB"}


def connect(path: Path) -> Connection:
    """The read-write connection to a store file (created if missing); StoreLocked when another
    process holds it."""
    try:
        return duckdb.connect(str(path), config=CONFIG)
    except (duckdb.Error, OSError) as exc:
        raise opening_error(path, exc) from exc


def connect_read_only(path: Path) -> Connection:
    """A read-only connection to a database file, which it cannot change."""
    try:
        return duckdb.connect(str(path), read_only=True)
    except (duckdb.Error, OSError) as exc:
        raise opening_error(path, exc) from exc


def own_files(path: Path) -> list[Path]:
    """The files a store at `path` keeps: the database and its write-ahead log."""
    return [path, path.with_name(path.name + ".wal")]


def opening_error(path: Path, exc: Exception) -> StoreUnavailable:
    """StoreLocked when another process holds the file, else StoreUnavailable with the reason."""
    if "lock" in str(exc).lower():
        return StoreLocked(f"the store at {path} is in use by another process (another command, "
                           "or a service that does not answer on the store's admin socket); wait "
                           "for it to end")
    return StoreUnavailable(f"cannot open the store at {path}: {exc}")


def lost_the_head(exc: Exception) -> bool:
    """Whether a failed write lost a race for the chain's head (another committed that seq):
    at commit a constraint violation, at insert a duplicate key on the audit log's seq."""
    text = str(exc)
    if isinstance(exc, duckdb.TransactionException):
        return "constraint" in text.lower() or "conflict" in text.lower()
    if isinstance(exc, duckdb.ConstraintException):
        return "seq" in text and "Duplicate key" in text
    return False


def migration_sql(sql: str) -> str:
    """A migration's text as this database runs it: as written (the migrations are DuckDB's)."""
    return sql


def guard_statements(append_only: list[str], update_only: list[str]) -> list[str]:
    """Triggers that make the database itself refuse UPDATE and DELETE (and so TRUNCATE) on
    `append_only` tables and UPDATE on `update_only` ones (IF NOT EXISTS: run at every open)."""
    sink = "CREATE TABLE IF NOT EXISTS append_only_guard (never INTEGER)"

    def refuse(table: str, verb: str, message: str) -> str:
        return (f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} AFTER {verb} ON {table} "
                f"FOR EACH STATEMENT INSERT INTO append_only_guard SELECT error('{message}')")

    return [sink,
            *(refuse(t, verb, f"{t} is append-only: {verb} is refused")
              for t in append_only for verb in ("UPDATE", "DELETE")),
            *(refuse(t, "UPDATE", f"{t} rows are never changed, only purged") for t in update_only)]


def checkpoint(cur: Connection) -> None:
    """Write the WAL into the file, so the file alone is the whole store."""
    cur.execute("CHECKPOINT")


def copy_database(cur: Connection, target: Path) -> None:
    """Copy every table of the connection's database into the new file `target` (one snapshot)."""
    source = cur.execute("SELECT current_database()").fetchone()[0]
    cur.execute("ATTACH ? AS backup_target", [str(target)])
    try:
        cur.execute(f'COPY FROM DATABASE "{source}" TO backup_target')
    finally:
        cur.execute("DETACH backup_target")


def copy_file(source: Path, target: Path, *, then: tuple[tuple[str, list], ...] = ()) -> None:
    """Copy the database file `source` (opened read-only) into the new file `target`. `then`:
    statements run on the copy before it is closed (its tables as `copy_target.<table>`)."""
    con = duckdb.connect()
    try:
        con.execute("ATTACH ? AS copy_source (READ_ONLY)", [str(source)])
        con.execute("ATTACH ? AS copy_target", [str(target)])
        con.execute("COPY FROM DATABASE copy_source TO copy_target")
        for sql, params in then:
            con.execute(sql, params)
        con.execute("DETACH copy_target")
        con.execute("DETACH copy_source")
    except duckdb.Error as exc:
        raise opening_error(Path(source), exc) from exc
    finally:
        con.close()


def frame(cur: Connection, sql: str, params: list) -> pd.DataFrame:
    """A query's result as a DataFrame (DuckDB builds it column-wise, with its types)."""
    return cur.execute(sql, params).df()


def insert(cur: Connection, table: str, columns: list[str], rows: list[list[Any]], *,
           parsed: dict | None = None) -> None:
    """Insert rows (values in `columns` order) into a table. `parsed`: statements parsed
    before, by their text (the caller's own, one per connection that uses it): one row's
    INSERT is then not parsed again, which is a fifth of its cost."""
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    if len(rows) == 1:  # the scoring path: plain execute is faster than executemany
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"
        if parsed is not None:
            statement = parsed.get(sql)
            if statement is None:
                statement = parsed[sql] = cur.extract_statements(sql)[0]
            sql = statement
        cur.execute(sql, rows[0])
        return
    if len(rows) <= SMALL_INSERT:
        cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
        return
    # Column-wise Arrow table: built in C from the transposed rows, read by DuckDB directly.
    batch = pa.table(dict(zip(columns, map(list, zip(*rows, strict=True)), strict=True)))  # noqa: F841
    cur.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM batch")


def arrow_batches(cur: Connection, sql: str, params: list, *, rows: int, buffer: str):
    """A query's result as Arrow record batches of `rows`, streamed in stored order (DuckDB
    computes at most `buffer` ahead, on this cursor only); the cursor is closed at the end, or
    when the caller stops early."""
    cur.execute(f"SET streaming_buffer_size = '{buffer}'")
    reader = cur.sql(sql, params=params).to_arrow_reader(rows)
    try:
        yield from reader
    finally:
        reader.close()
        cur.close()


def drop_cached_blocks(cur: Connection, *, limit: str) -> None:
    """Evict every block DuckDB keeps cached from the file and is not using, when its memory is
    bounded (`limit`, the memory_limit in force) and the blocks are each read once (a scan of the
    whole chain). DuckDB keeps what it read until the limit, then evicts a block for each one it
    needs and hands freed memory back to the system every limit/16: held at the limit, the
    verification's two scans spent about half their time in page faults on the memory handed
    back (at a million predictions); dropped every few batches, the cache never fills.

    There is no statement for it: asking for a memory limit below what is in use evicts every
    block it can, then fails and keeps the limit as it was. Should it succeed (nothing in use),
    `limit` is put back at once."""
    try:
        cur.execute("SET memory_limit = '1MB'")
    except duckdb.Error:
        return
    cur.execute(f"SET memory_limit = '{limit}'")


def put_back_setting(cur: Connection, name: str, value: str) -> None:
    """A database setting as it was read before (`value`): the default again if it was the
    default (a limit read as "18.8 GiB" and set again would lose its last digits). Errors are
    not raised: the setting stays as it is."""
    try:
        cur.execute(f"RESET {name}")
        if cur.execute("SELECT current_setting(?)", [name]).fetchone()[0] != value:
            cur.execute(f"SET {name} = '{value}'")
    except duckdb.Error:
        pass


# ---- SQL fragments the reads build their statements with (postgres_dialect has the same) ----

def has_other_than(list_column: str, value: str) -> str:
    """Whether a text-list column holds any element other than `value` (a literal)."""
    return f"len(list_filter({list_column}, lambda c: c <> '{value}')) > 0"


def list_contains(list_column: str, item: str) -> str:
    return f"list_contains({list_column}, {item})"


def in_list(item: str, list_param: str) -> str:
    """Whether `item` is an element of the text list bound to `list_param`."""
    return f"list_contains({list_param}, {item})"


def plus_days(timestamp: str, days: str) -> str:
    return f"{timestamp} + to_days({days})"


def days_between(start: str, end: str) -> str:
    """Day boundaries crossed from start to end (end's date minus start's)."""
    return f"date_diff('day', {start}, {end})"


def hours_between(start: str, end: str) -> str:
    return f"date_diff('hour', {start}, {end})"


def minutes_between(start: str, end: str) -> str:
    return f"date_diff('minute', {start}, {end})"


def quantile(expression: str, q: float) -> str:
    """The continuous (interpolated) q-quantile of an aggregate's values."""
    return f"quantile_cont({expression}, {q})"


def list_of(column: str) -> str:
    """An aggregate: the group's values as a list, in order."""
    return f"list({column} ORDER BY {column})"


def latest_per(table: str, key: str) -> str:
    """Each key's latest row (by audit seq) of an event table."""
    return (f"SELECT * FROM {table} QUALIFY row_number() OVER "
            f"(PARTITION BY {key} ORDER BY audit_seq DESC) = 1")


def json_fields(source: str, id_column: str, json_column: str, field: str) -> str:
    """(id, field): one row per element of a JSON array of objects, its `field` as text; rows
    whose text is not valid JSON give none."""
    return (f"SELECT {id_column}, unnest(from_json({json_column}, '[{{\"{field}\": \"VARCHAR\"}}]'), "
            f"recursive := true) FROM {source} WHERE json_valid({json_column})")


def json_text(json_column: str) -> str:
    """The text of one key of a JSON object column (the key: one bound parameter); NULL when
    the key is absent or null."""
    return f"({json_column} ->> CAST(? AS TEXT))"


def json_values(source: str, columns: str, json_column: str, keys: list[str]) -> tuple[str, list]:
    """A query of `columns` of `source` with (key, value) for each of `keys` in the JSON object
    held as text in `json_column`: the value as text (a JSON null: NULL; true/false as such).
    An absent key gives a NULL value here and no row on PostgreSQL: count the values that are
    there. Returns (SQL, its parameters in order). Each row's JSON is parsed once."""
    sql = (f"SELECT {columns}, unnest(CAST(? AS TEXT[])) AS key, "
           f"unnest(json_extract_string({json_column}, CAST(? AS TEXT[]))) AS value FROM {source}")
    return sql, [keys, [f"$.{k}" for k in keys]]
