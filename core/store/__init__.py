"""The store: the only package with SQL. An embedded DuckDB file, append-only tables, one audit
chain. `open_store(path)` gives the process-wide Store of a file."""

from __future__ import annotations

import threading
from pathlib import Path

from core.store.aggregates import MonitoringReads
from core.store.base import StoreBase
from core.store.queries import AccessReads, OutcomeReads, RecordReads, ReviewReads
from core.store.records import RECORDS
from core.store.schema import APPEND_ONLY, AUDIT_COLUMNS, MIGRATIONS, PHI_COLUMNS, TABLES
from core.store.writes import ChainWrites, Event

__all__ = ["APPEND_ONLY", "AUDIT_COLUMNS", "MIGRATIONS", "PHI_COLUMNS", "RECORDS", "TABLES", "Event",
           "Store",
           "close_all", "open_store"]


class Store(StoreBase, ChainWrites, RecordReads, ReviewReads, OutcomeReads, AccessReads,
            MonitoringReads):
    """An open store file; create with `open_store` so each file has one Store per process."""


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def open_store(path: Path) -> Store:
    """The process-wide Store for a file (opened and migrated on first use)."""
    key = str(Path(path).resolve())
    with _stores_lock:
        if key not in _stores:
            _stores[key] = Store(Path(path))
        return _stores[key]


def close_all() -> None:
    with _stores_lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
