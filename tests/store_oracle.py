"""Tests' own view of a store's database, below the product's interface: raw SQL on the Store's
connection (so the same DuckDB instance), for setting up a state the product never makes
(tampering, old rows) and for asserting on it. Only tests use this."""

from __future__ import annotations

from core.store import Store


def sql(store: Store, query: str, params: list | None = None) -> list[tuple]:
    """Run one statement on the store's database; its rows (empty for a statement without)."""
    cur = store._con.cursor()
    cur.execute(query, params or [])
    try:
        return cur.fetchall()
    except Exception:  # noqa: BLE001 - a statement without a result set
        return []


def drop_guards(store: Store) -> None:
    """What someone holding the file could do first: drop the append-only triggers."""
    for name, table in sql(store, "SELECT trigger_name, table_name FROM duckdb_triggers()"):
        sql(store, f"DROP TRIGGER {name} ON {table}")
