"""The store: the only package with SQL. Append-only tables and one audit chain, behind the
declared interface `Store` (core/store/interface.py); its implementations are an embedded DuckDB
file (`DuckDBStore`, what is DuckDB's own in duckdb_dialect.py) and the institution's PostgreSQL
(`PostgresStore`, core/store/postgres.py). `open_store(path or postgresql:// URL)` gives the
process-wide Store of a file or database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.config import DATABASE_URL_SCHEMES
from core.store.aggregates import MonitoringReads
from core.store.alert_reads import AlertReads
from core.store.base import StoreBase
from core.store.chain_windows import ChainWindowReads
from core.store.drift_reads import DriftReads
from core.store.interface import Store
from core.store.queries import AccessReads, OutcomeReads, RecordReads, ReviewReads
from core.store.records import RECORDS, Event
from core.store.schema import APPEND_ONLY, AUDIT_COLUMNS, MIGRATIONS, PHI_COLUMNS, TABLES
from core.store.writes import ChainWrites

__all__ = ["APPEND_ONLY", "AUDIT_COLUMNS", "MIGRATIONS", "PHI_COLUMNS", "RECORDS", "TABLES", "DuckDBStore",
           "Event", "Store", "close_all", "is_database_url", "open_file", "open_store", "released"]


class DuckDBStore(StoreBase, ChainWrites, RecordReads, ReviewReads, OutcomeReads, AccessReads,
                  MonitoringReads, ChainWindowReads, AlertReads, DriftReads):
    """A store in an embedded DuckDB file; create with `open_store` so each file has one per
    process."""


_stores: dict[str, Store] = {}


def is_database_url(db: object) -> bool:
    """Whether APP_DB names a database server (a postgresql:// URL) rather than a file."""
    return isinstance(db, str) and db.startswith(DATABASE_URL_SCHEMES)
_stores_lock = threading.Lock()


def open_store(path: Path | str) -> Store:
    """The process-wide Store for a file or a postgresql:// URL (opened, and migrated when it is
    behind, on first use)."""
    url = is_database_url(path)
    key = path if url else str(Path(path).resolve())
    with _stores_lock:
        if key not in _stores:
            if url:
                from core.store.postgres import PostgresStore

                _stores[key] = PostgresStore(path)
            else:
                _stores[key] = DuckDBStore(Path(path))
        return _stores[key]


def open_file(path: Path) -> Store:
    """A Store of its own over one file, outside the process-wide ones, for a caller that opens
    and closes a file itself (a restore's candidate copy, the live file it holds)."""
    return DuckDBStore(Path(path))


@contextmanager
def released(path: Path) -> Iterator[None]:
    """While the context runs, this process holds no Store of the file: its process-wide one is
    closed (once a write under way has committed) and `open_store` waits; after it, `open_store`
    opens the file again. For the moments a restore reads and replaces the file of a store the
    running service holds. Callers inside must not call `open_store`."""
    key = path if is_database_url(path) else str(Path(path).resolve())
    with _stores_lock:
        store = _stores.pop(key, None)
        if store is not None:
            with store._lock:
                store.close()
        yield


def close_all() -> None:
    with _stores_lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
