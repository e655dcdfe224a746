"""What is PostgreSQL's own in the store, in one module, as duckdb_dialect is DuckDB's: the
connection pool, which errors mean what, the append-only triggers (PL/pgSQL), the head's
advisory lock, results as DataFrames. The only module of core that imports psycopg (an
import-linter contract).

The rest of the package writes SQL with `?` parameters over a DB-API cursor; a `Cursor` here
takes that SQL (translated to psycopg's `%s`) on a connection of the pool. A read returns its
connection to the pool as soon as its rows are fetched; a transaction (BEGIN ... COMMIT, the
append path) keeps its connection until it ends.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pandas as pd
import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from core.config import redacted_url as redacted
from core.errors import StoreUnavailable

Error = (psycopg.Error, PoolTimeout)  # whatever the database (or the pool) raises
POOL_MAX = 8  # connections per process: the API's thread pool, the UI's sessions, a command
CONNECT_TIMEOUT_S = 5
HEAD_LOCK = 7_291_001  # the advisory lock that serialises appends on the chain's head


def _sql(sql: str, params) -> str:
    """`?` parameters as psycopg's `%s` (and a literal % doubled), when there are parameters."""
    if not params:
        return sql
    return sql.replace("%", "%%").replace("?", "%s")


class Cursor:
    """A DB-API-like cursor over the pool: `execute(sql, params)` then fetchone/fetchall and
    `description`, the shape the store's modules use with DuckDB's cursors."""

    def __init__(self, db: Database):
        self._db = db
        self._con: psycopg.Connection | None = None  # held while a transaction is open
        self._rows: list[tuple] = []
        self.description: list | None = None
        self.rowcount = -1

    def execute(self, sql: str, params: list | tuple | None = None) -> Cursor:
        params = list(params or [])
        con = self._con or self._db.take()
        try:
            cur = con.execute(_sql(sql, params), params or None)
            self.description = cur.description
            self.rowcount = cur.rowcount
            self._rows = cur.fetchall() if cur.description else []
        except BaseException as exc:
            # Not in a transaction, or the connection is gone (the pool replaces it): back to the
            # pool. A failed transaction on a live connection is the caller's to roll back.
            if self._con is None or con.broken:
                self._con = None
                self._db.give(con)
            if isinstance(exc, psycopg.OperationalError):
                raise unreachable(self._db.url, exc) from exc
            raise
        if con.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._con = con  # inside a transaction: the same connection until it ends
        else:
            self._con = None
            self._db.give(con)
        return self

    def fetchone(self) -> tuple | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple]:
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        if self._con is not None:
            if self._con.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self._con.rollback()
            self._db.give(self._con)
            self._con = None


class Database:
    """One process's pool of connections to a PostgreSQL database (autocommit: the store's
    modules say BEGIN and COMMIT themselves)."""

    def __init__(self, url: str):
        self.url = url
        self._pool = ConnectionPool(
            url, min_size=1, max_size=POOL_MAX, open=False, timeout=CONNECT_TIMEOUT_S,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S,
                    "application_name": "clinical-risk-service"},
            check=ConnectionPool.check_connection, reconnect_timeout=CONNECT_TIMEOUT_S * 2)
        self._lock = threading.Lock()
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S * 2)
        except (psycopg.Error, PoolTimeout) as exc:
            self._pool.close()
            raise opening_error(url, _first_connect_error(url) or exc) from exc

    def take(self) -> psycopg.Connection:
        try:
            return self._pool.getconn()
        except PoolTimeout as exc:  # no connection could be made (or all are in use)
            raise unreachable(self.url, _first_connect_error(self.url) or exc) from exc

    def give(self, con: psycopg.Connection) -> None:
        self._pool.putconn(con)

    def cursor(self) -> Cursor:
        return Cursor(self)

    def close(self) -> None:
        self._pool.close()


def _first_connect_error(url: str) -> Exception | None:
    """What one direct connection says (the pool reports only that it timed out)."""
    try:
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
    except psycopg.Error as exc:
        return exc
    return None


def unreachable(url: str, exc: Exception) -> StoreUnavailable:
    """The database did not answer (down, restarting, the network): nothing was recorded."""
    text = re.sub(r"password=\S+", "password=***", str(exc)).strip()
    return StoreUnavailable(f"the database {redacted(url)} did not answer: {text}")


def connect(url: str) -> Database:
    return Database(url)


def opening_error(url: str, exc: Exception) -> StoreUnavailable:
    text = re.sub(r"password=\S+", "password=***", str(exc)).strip()
    return StoreUnavailable(f"cannot open the store at {redacted(url)}: {text}")


def lost_the_head(exc: Exception) -> bool:
    """Whether a failed write lost a race for the chain's head: a duplicate audit seq."""
    return isinstance(exc, pg_errors.UniqueViolation) and "audit_log" in str(exc)


def refused_privilege(exc: Exception) -> bool:
    return isinstance(exc, pg_errors.InsufficientPrivilege)


def lock_head(cur: Cursor) -> None:
    """Serialise appends on the chain's head across every process, until the transaction ends."""
    cur.execute("SELECT pg_advisory_xact_lock(?)", [HEAD_LOCK])


def migration_sql(sql: str) -> str:
    """A migration's DuckDB text as PostgreSQL's: the few types and functions named differently."""
    sql = re.sub(r"\bDOUBLE\b(?! PRECISION)", "DOUBLE PRECISION", sql)
    return sql.replace("uuid()::TEXT", "gen_random_uuid()::TEXT")


def guard_statements(append_only: list[str], update_only: list[str]) -> list[str]:
    """Triggers that make the database itself refuse UPDATE, DELETE and TRUNCATE on
    `append_only` tables, and UPDATE and TRUNCATE on `update_only` ones (CREATE OR REPLACE:
    run by every migrating open)."""
    function = """CREATE OR REPLACE FUNCTION store_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN
        RAISE EXCEPTION '% is append-only: % is refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'insufficient_privilege';
        END $$"""

    def refuse(table: str, verbs: str) -> str:
        return (f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE {verbs} ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION store_refuse_change()")

    return [function, *(refuse(t, "UPDATE OR DELETE OR TRUNCATE") for t in append_only),
            *(refuse(t, "UPDATE OR TRUNCATE") for t in update_only)]


def own_files(url: str) -> list:  # noqa: ARG001 - a server's files are its own
    """The files this process keeps for the store: none."""
    return []


def checkpoint(cur: Cursor) -> None:
    """Nothing to do: the server makes its own checkpoints, and a commit is durable."""


DATE_OID, TIMESTAMP_OID = 1082, 1114


def frame(cur: Cursor, sql: str, params: list) -> pd.DataFrame:
    """A query's result as a DataFrame, its dates and times as datetime64 columns (the shape
    DuckDB gives the same query)."""
    cur.execute(sql, params)
    out = pd.DataFrame.from_records(cur.fetchall(), columns=[d.name for d in cur.description])
    for d in cur.description:
        if d.type_code in (DATE_OID, TIMESTAMP_OID):
            out[d.name] = pd.to_datetime(out[d.name]).astype("datetime64[us]")
    return out


def insert(cur: Cursor, table: str, columns: list[str], rows: list[list[Any]], *,
           parsed: dict | None = None) -> None:  # noqa: ARG001 - psycopg prepares the statement
    """Insert rows (values in `columns` order) into a table: one multi-row INSERT per 1,000."""
    names = ", ".join(columns)
    one = "(" + ", ".join("?" for _ in columns) + ")"
    for start in range(0, len(rows), 1000):
        chunk = rows[start:start + 1000]
        cur.execute(f"INSERT INTO {table} ({names}) VALUES " + ", ".join([one] * len(chunk)),
                    [v for row in chunk for v in row])


# ---- SQL fragments the reads build their statements with (as duckdb_dialect's) ----

def has_other_than(list_column: str, value: str) -> str:
    return f"EXISTS (SELECT 1 FROM unnest({list_column}) AS c(code) WHERE c.code <> '{value}')"


def list_contains(list_column: str, item: str) -> str:
    return f"CAST({item} AS TEXT) = ANY({list_column})"


def in_list(item: str, list_param: str) -> str:
    return f"{item} = ANY(CAST({list_param} AS TEXT[]))"


def plus_days(timestamp: str, days: str) -> str:
    return f"{timestamp} + make_interval(days => {days})"


def days_between(start: str, end: str) -> str:
    return f"(CAST({end} AS DATE) - CAST({start} AS DATE))"


def hours_between(start: str, end: str) -> str:
    return (f"CAST(extract(epoch FROM date_trunc('hour', {end}) - date_trunc('hour', {start})) "
            "/ 3600 AS BIGINT)")


def minutes_between(start: str, end: str) -> str:
    return (f"CAST(extract(epoch FROM date_trunc('minute', {end}) - date_trunc('minute', {start})) "
            "/ 60 AS BIGINT)")


def quantile(expression: str, q: float) -> str:
    return f"percentile_cont({q}) WITHIN GROUP (ORDER BY {expression})"


def list_of(column: str) -> str:
    return f"array_agg({column} ORDER BY {column})"


def latest_per(table: str, key: str) -> str:
    return f"SELECT DISTINCT ON ({key}) * FROM {table} ORDER BY {key}, audit_seq DESC"


def json_fields(source: str, id_column: str, json_column: str, field: str) -> str:
    return (f"SELECT s.{id_column}, e.value ->> '{field}' AS {field} FROM {source} s, "
            f"jsonb_array_elements(CASE WHEN jsonb_typeof(CAST(s.{json_column} AS JSONB)) = 'array' "
            f"THEN CAST(s.{json_column} AS JSONB) ELSE '[]' END) AS e(value)")


def json_text(json_column: str) -> str:
    return f"(CAST({json_column} AS JSONB) ->> CAST(? AS TEXT))"


def json_values(source: str, columns: str, json_column: str, keys: list[str]) -> tuple[str, list]:
    # OFFSET 0: planned on its own, so the planner neither joins anything to `source` before
    # the JSON is read (it would read each row's JSON once per joined row) nor sorts the rows,
    # JSON and all, to group them (measured: the weekly counts take about a third less time).
    sql = (f"SELECT {columns}, kv.key, kv.value FROM {source}, "
           f"json_each_text(CAST({json_column} AS JSON)) AS kv(key, value) "
           "WHERE kv.key = ANY(CAST(? AS TEXT[])) OFFSET 0")
    return sql, [keys]
