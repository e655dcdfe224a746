"""Tests' own view of a store's database, below the product's interface: raw SQL on the Store's
connection (so the same DuckDB instance), for setting up a state the product never makes
(tampering, old rows, a refusing disk) and for asserting on what was stored. Only tests use this;
the product reads through the store's declared interface (core/store/interface.py)."""

from __future__ import annotations

import pandas as pd

from core.store import DuckDBStore


def sql(store: DuckDBStore, query: str, params: list | None = None) -> list[tuple]:
    """Run one statement on the store's database (either backend: `?` parameters); its rows
    (empty for a statement without)."""
    cur = store._cursor()
    cur.execute(query, params or [])
    try:
        return cur.fetchall()
    except Exception:  # noqa: BLE001 - a statement without a result set
        return []


def frame(store: DuckDBStore, query: str, params: list | None = None) -> pd.DataFrame:
    """A query's rows as a DataFrame."""
    return store._dialect.frame(store._cursor(), query, params or [])


def rows(store: DuckDBStore, table: str, **equal) -> pd.DataFrame:
    """A table's rows in the order they were written (the audit log by seq, an event table by its
    rows' audit seq); `equal`: only rows with these column values."""
    where = " AND ".join(f"{column} = ?" for column in equal) or "true"
    order = "seq" if table == "audit_log" else "audit_seq"
    return frame(store, f"SELECT * FROM {table} WHERE {where} ORDER BY {order}",  # noqa: S608
                 list(equal.values()))  # names from the tests, values bound


def drop_guards(store: DuckDBStore) -> None:
    """What someone holding the file could do first: drop the append-only triggers."""
    for name, table in sql(store, "SELECT trigger_name, table_name FROM duckdb_triggers()"):
        sql(store, f"DROP TRIGGER {name} ON {table}")
